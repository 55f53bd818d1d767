"""The schema by Alembic migrations (``bot/migrations``): upgrade to head, or tell whether a
database is there.

The migrations run on a connection of the bot's own :class:`~bot.storage.Store`, so the
same URL works for SQLite and for PostgreSQL with asyncpg. Several processes may start at
once: on PostgreSQL they queue on an advisory lock, on a SQLite file on a lock file beside
it, and the later ones find the schema at head already.

Alembic is imported only to migrate: importing it takes about a quarter of a second, more
than a tenth of the bot's start, and a start usually finds the database at head, which a
plain query of its version table and a look at the revision files tell (``head``).
"""

from __future__ import annotations

import fcntl
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

# Any fixed number: the advisory lock the processes of one database take to migrate it.
_LOCK_KEY = 0x79696261  # "yiba"


class SchemaBehind(RuntimeError):
    """The database is not at the newest migration and AUTO_MIGRATE is off."""


VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r"^(down_revision|revision)\b[^=\n]*=\s*(?:None|[\"']([^\"']*)[\"'])", re.M)


def _config(conn: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "bot:migrations")
    config.attributes["connection"] = conn
    return config


@functools.cache
def head() -> str:
    """The newest revision this code ships: the one no revision file names as its
    ``down_revision``. Alembic answers where the files do not tell one plainly."""
    revisions: set[str] = set()
    previous: set[str] = set()
    for path in VERSIONS.glob("*.py"):
        found = dict(_REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" in found:
            revisions.add(found["revision"])
            previous.add(found.get("down_revision", ""))
    heads = revisions - previous
    if len(heads) == 1:
        return heads.pop()
    return _alembic_head()


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None
    return found


def current(conn: Connection) -> str | None:
    """The database's revision (None: never migrated)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) == 1:
        return str(rows[0])
    from alembic.runtime.migration import MigrationContext  # several: Alembic says what

    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: Connection) -> None:
    """Migrate to head, in the caller's transaction."""
    if current(conn) == head():
        return  # the usual start: nothing to do, and no Alembic to import
    from alembic import command

    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        command.upgrade(_config(conn), "head")
        return
    database = conn.engine.url.database
    if conn.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        command.upgrade(_config(conn), "head")
        return
    # SQLite runs DDL outside a transaction: other processes wait on this lock instead,
    # and the migration is committed before the lock goes (on a connection of its own), so
    # the next one finds the database at head, not half-way (seen with two revisions).
    with Path(f"{database}.migrate-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with conn.engine.connect() as own:
            command.upgrade(_config(own), "head")
            own.commit()

"""The schema by Alembic migrations (``bot/migrations``): upgrade to head, or tell whether a
database is there.

The migrations run on a connection of the bot's own :class:`~bot.storage.Store`, so the
same URL works for SQLite and for PostgreSQL with asyncpg. Several processes may start at
once: on PostgreSQL they queue on an advisory lock, on a SQLite file on a lock file beside
it, and the later ones find the schema at head already.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

# Any fixed number: the advisory lock the processes of one database take to migrate it.
_LOCK_KEY = 0x79696261  # "yiba"


class SchemaBehind(RuntimeError):
    """The database is not at the newest migration and AUTO_MIGRATE is off."""


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "bot:migrations")
    config.attributes["connection"] = conn
    return config


def head() -> str:
    """The newest revision this code ships."""
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None
    return found


def current(conn: Connection) -> str | None:
    """The database's revision (None: never migrated)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: Connection) -> None:
    """Migrate to head, in the caller's transaction."""
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

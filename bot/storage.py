"""Conversation state per chat, committed on every update (SQLAlchemy async).

Each row carries a version; a save only succeeds against the version it loaded, so two
processes handling the same chat never overwrite each other (the loser reloads and
handles the event again). Works with SQLite and PostgreSQL (asyncpg): a SQLite file is
used through the stdlib driver in worker threads (see ``create_engine``), anything else
through SQLAlchemy's asyncio engine; the statements and transactions are the same.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from conversations.state import State

T = TypeVar("T")
metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("state", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and one writer in other processes proceed; wait instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_file(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


def create_engine(url: str) -> Engine | AsyncEngine:
    """The engine for ``url``.

    A SQLite file gets a plain engine (the stdlib driver) that :class:`Store` runs in worker
    threads, one thread hop per load or save: through aiosqlite every cursor, execute, fetch,
    close, commit and rollback is a hop of its own (about ten per update), which cost more
    than the queries. Other databases (PostgreSQL with asyncpg, in-memory SQLite) get the
    async engine.
    """
    parsed = make_url(url)
    engine: Engine | AsyncEngine
    if _sqlite_file(parsed):
        assert parsed.database is not None
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Same SQLite dialect and pool as aiosqlite's; check_same_thread is off for files.
        engine = create_sync_engine(parsed.set(drivername="sqlite"))
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(url)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


# Built once: building a statement and its cache key costs more than running it.
_LOAD = select(conversations.c.state, conversations.c.version).where(
    conversations.c.chat_id == bindparam("chat_id")
)
_INSERT = insert(conversations)
_UPDATE = (
    update(conversations)
    .where(conversations.c.chat_id == bindparam("chat_id_"))
    .where(conversations.c.version == bindparam("loaded_version"))
    .values(
        state=bindparam("new_state"),
        version=bindparam("new_version"),
        updated_at=bindparam("new_updated_at"),
    )
)
_THREADS = 15  # the pool's default size plus overflow: no work waits for a thread


class Store:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self._threads = (
            ThreadPoolExecutor(_THREADS, thread_name_prefix="store")
            if isinstance(self.engine, Engine)
            else None
        )

    async def _run(self, work: Callable[[Connection], T], *, commit: bool) -> T:
        """``work`` on a pooled connection, off the event loop.

        With ``commit`` it runs in a transaction committed at the end (rolled back if it
        raises); without, the connection is rolled back when it goes back to the pool.
        """
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            async with engine.begin() if commit else engine.connect() as aconn:
                return await aconn.run_sync(work)

        def in_thread() -> T:
            with engine.begin() if commit else engine.connect() as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(self._threads, in_thread)

    async def init(self) -> None:
        await self._run(metadata.create_all, commit=True)

    async def close(self) -> None:
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
            return
        await asyncio.get_running_loop().run_in_executor(self._threads, self.engine.dispose)
        if self._threads is not None:
            self._threads.shutdown()
            # Threads start on demand: like the disposed engine, the store stays usable.
            self._threads = ThreadPoolExecutor(_THREADS, thread_name_prefix="store")

    async def load(self, chat_id: int) -> tuple[State | None, int]:
        """The chat's state and its version (0 when there is none yet)."""

        def work(conn: Connection) -> tuple[str, int] | None:
            row = conn.execute(_LOAD, {"chat_id": chat_id}).first()
            return None if row is None else (row.state, row.version)

        found = await self._run(work, commit=False)
        if found is None:
            return None, 0
        return State.model_validate_json(found[0]), found[1]

    async def save(self, chat_id: int, state: State, version: int) -> bool:
        """Store ``state`` if the row is still at ``version``; False when someone else won."""
        new_state = state.model_dump_json()
        updated_at = state.updated_at or dt.datetime.now(dt.UTC)

        def work(conn: Connection) -> bool:
            if version == 0:
                values = {"state": new_state, "version": 1, "updated_at": updated_at}
                conn.execute(_INSERT, {"chat_id": chat_id, **values})
                return True
            result = conn.execute(
                _UPDATE,
                {
                    "chat_id_": chat_id,
                    "loaded_version": version,
                    "new_state": new_state,
                    "new_version": version + 1,
                    "new_updated_at": updated_at,
                },
            )
            return bool(result.rowcount == 1)

        try:
            return await self._run(work, commit=True)
        except IntegrityError:
            return False

    async def purge(self, before: dt.datetime) -> int:
        """Delete conversations untouched since ``before``; they hold personal data."""

        def work(conn: Connection) -> int:
            result = conn.execute(delete(conversations).where(conversations.c.updated_at < before))
            return int(result.rowcount or 0)

        return await self._run(work, commit=True)

"""Conversation state per chat, committed on every update (SQLAlchemy async).

Each row carries a version; a save only succeeds against the version it loaded, so two
processes handling the same chat never overwrite each other (the loser reloads and
handles the event again). The replies of an update are committed with its state, in the
``outbox``, and deleted one by one as they are sent: a crash between the commit and the
sends leaves them there to send later, and repeats at most the reply in flight.

Personal data at rest: times are stored in UTC (the retention purge compares with a UTC
cut-off); SQLite overwrites deleted content (``secure_delete``) and :meth:`Store.scrub`
moves the write-ahead log into the database and empties it, so what a resident cleared
is not left in the ``-wal`` file. Works with SQLite and PostgreSQL (asyncpg): a SQLite file is
used through the stdlib driver in worker threads (see ``create_engine``), and its turns (the
statements of every update) through ``sqlite3`` directly (:mod:`bot.sqlite_turns`); anything
else through SQLAlchemy's asyncio engine. The statements and transactions are the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

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
    text,
    update,
)
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.expression import Executable

from bot import migrate as migrations
from bot.sqlite_turns import Turns
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

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("chat_id", BigInteger, nullable=False, index=True),
    Column("reply", Text, nullable=False),  # what to send, as JSON (bot.service.Outgoing)
    Column("created_at", DateTime(timezone=True), nullable=False),  # or when last claimed
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Wait instead of failing, set first: switching to WAL itself takes a lock that another
    # process starting at the same moment may hold ("database is locked" seen in CI).
    cursor.execute("PRAGMA busy_timeout=5000")
    # WAL lets readers and one writer in other processes proceed.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Deleted rows (a purge, a sent reply, /cancel's old state) are zeroed, not just freed.
    cursor.execute("PRAGMA secure_delete=ON")
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
    if parsed.get_backend_name() == "postgresql":
        # Each chat being handled holds a connection (Store.chat) and may need one more.
        return create_async_engine(url, pool_size=CHAT_SLOTS + 4, max_overflow=4)
    engine = create_async_engine(url)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


# Built once: building a statement and its cache key costs more than running it.
_LOAD = select(conversations.c.state, conversations.c.version).where(
    conversations.c.chat_id == bindparam("chat_id")
)
_INSERT = insert(conversations).values(
    state=bindparam("new_state"), updated_at=bindparam("new_updated_at")
)
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
_PENDING = (
    select(outbox.c.id, outbox.c.reply)
    .where(outbox.c.chat_id == bindparam("chat_id"))
    .order_by(outbox.c.id)
)
_OUTBOX = insert(outbox)
_SENT = delete(outbox).where(outbox.c.id == bindparam("row_id"))
_THREADS = 15  # the pool's default size plus overflow: no work waits for a thread
# Chats handled at once by one process on PostgreSQL; more wait (unconfirmed, so safe).
CHAT_SLOTS = 16
# Session-level advisory locks keyed by chat id (one bigint key); the delivery worker's
# locks use the two-int4 key space, which PostgreSQL keeps apart from this one.
_LOCK_CHAT = text("SELECT pg_advisory_lock(:chat_id)")
_UNLOCK_CHAT = text("SELECT pg_advisory_unlock(:chat_id)")
# The connection of the chat this task is handling (Store.chat): every statement of the
# turn goes through it.
_TURN: ContextVar[AsyncConnection | None] = ContextVar("turn", default=None)


class Db(Protocol):
    """What a turn's statements run on: SQLAlchemy on any engine (:class:`CoreDb`), or
    SQLite's own driver for a file (:class:`bot.sqlite_turns.Driver`)."""

    def rows(self, statement: Executable, values: Mapping[str, Any]) -> Sequence[Any]: ...

    def changed(self, statement: Executable, values: Mapping[str, Any]) -> int: ...

    def insert_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None: ...


class CoreDb:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def rows(self, statement: Executable, values: Mapping[str, Any]) -> Sequence[Any]:
        return self.conn.execute(statement, values).all()

    def changed(self, statement: Executable, values: Mapping[str, Any]) -> int:
        return int(self.conn.execute(statement, values).rowcount)

    def insert_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        self.conn.execute(statement, list(rows))


def _pending(db: Db, chat_id: int) -> list[tuple[int, str]]:
    return [(row_id, reply) for row_id, reply in db.rows(_PENDING, {"chat_id": chat_id})]


@dataclass(frozen=True)
class Change:
    """What an update does to a chat: its new state, and its replies (JSON) for the outbox."""

    state: State
    replies: Sequence[str] = ()


def _load(db: Db, chat_id: int) -> tuple[State, int] | None:
    found = db.rows(_LOAD, {"chat_id": chat_id})
    if not found:
        return None
    state, version = found[0]
    return State.model_validate_json(state), version


def _write(db: Db, chat_id: int, change: Change, version: int) -> list[tuple[int, str]] | None:
    """Store the change if the row is still at ``version``; the outbox then, or None when
    someone else won (an insert that lost raises IntegrityError)."""
    state = change.state
    # UTC: SQLite keeps no offset, and the purge compares with a UTC cut-off.
    updated_at = (state.updated_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    values = {"new_state": state.model_dump_json(), "new_updated_at": updated_at}
    if version == 0:
        db.changed(_INSERT, {"chat_id": chat_id, "version": 1, **values})
    else:
        moved = db.changed(
            _UPDATE,
            {"chat_id_": chat_id, "loaded_version": version, "new_version": version + 1, **values},
        )
        if moved != 1:
            return None
    if change.replies:
        rows = [{"chat_id": chat_id, "reply": r, "created_at": updated_at} for r in change.replies]
        db.insert_many(_OUTBOX, rows)
    return _pending(db, chat_id)


class Store:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self._threads = (
            ThreadPoolExecutor(_THREADS, thread_name_prefix="store")
            if isinstance(self.engine, Engine)
            else None
        )
        self._slots = asyncio.Semaphore(CHAT_SLOTS)
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}
        parsed = make_url(url)
        # A SQLite file's turns skip SQLAlchemy (bot.sqlite_turns); everything else uses it.
        self._turns = (
            Turns(parsed.database, _sqlite_pragmas)
            if _sqlite_file(parsed) and parsed.database
            else None
        )

    async def _transaction(self, work: Callable[[Db], T]) -> T:
        """``work`` in a transaction committed at the end (rolled back if it raises)."""
        if self._turns is not None:
            return await self._turns.run(work)
        return await self._run(lambda conn: work(CoreDb(conn)), commit=True)

    async def _run(self, work: Callable[[Connection], T], *, commit: bool) -> T:
        """``work`` on a pooled connection, off the event loop.

        With ``commit`` it runs in a transaction committed at the end (rolled back if it
        raises); without, the connection is rolled back when it goes back to the pool.
        """
        engine = self.engine
        turn = _TURN.get()
        if turn is not None:
            if commit:
                async with turn.begin():
                    return await turn.run_sync(work)
            try:
                return await turn.run_sync(work)
            finally:
                await turn.rollback()
        if isinstance(engine, AsyncEngine):
            async with engine.begin() if commit else engine.connect() as aconn:
                return await aconn.run_sync(work)

        def in_thread() -> T:
            with engine.begin() if commit else engine.connect() as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(self._threads, in_thread)

    @contextlib.asynccontextmanager
    async def chat(self, chat_id: int) -> AsyncIterator[None]:
        """One chat's turn: an update handled, committed and its replies sent, while no
        other turn of that chat runs, in this process or another.

        On PostgreSQL the turn holds a session advisory lock on the chat id, on its own
        connection, which every statement of the turn then uses: processes behind one
        webhook address apply a chat's updates one at a time and send its replies in order,
        and a killed process's lock goes with its connection. SQLite serves one process:
        a lock in memory.
        """
        if self.engine.dialect.name != "postgresql":
            async with self._local_lock(chat_id):
                yield
            return
        assert isinstance(self.engine, AsyncEngine)
        async with self._slots, self.engine.connect() as conn:
            await conn.execute(_LOCK_CHAT, {"chat_id": chat_id})
            await conn.commit()
            token = _TURN.set(conn)
            try:
                yield
            finally:
                _TURN.reset(token)
                # A broken connection lost its lock with it; the pool discards it.
                with contextlib.suppress(Exception):
                    await conn.rollback()
                    await conn.execute(_UNLOCK_CHAT, {"chat_id": chat_id})
                    await conn.commit()

    @contextlib.asynccontextmanager
    async def _local_lock(self, chat_id: int) -> AsyncIterator[None]:
        lock, users = self._locks.get(chat_id, (asyncio.Lock(), 0))
        self._locks[chat_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[chat_id]
            if users == 1:
                del self._locks[chat_id]
            else:
                self._locks[chat_id] = (lock, users - 1)

    async def init(self, migrate: bool = True) -> None:
        """Ready the database: migrate it to head, or with ``migrate`` off only check that
        someone did (:class:`bot.migrate.SchemaBehind` if not)."""
        if migrate:
            await self._run(migrations.upgrade, commit=True)
        else:
            found = await self._run(migrations.current, commit=False)
            if found != migrations.head():
                raise migrations.SchemaBehind(
                    f"database at migration {found}, code at {migrations.head()}: "
                    "run `python -m bot migrate` (or set AUTO_MIGRATE=true)"
                )
        await self.scrub()  # a crash may have left cleared data in the write-ahead log

    async def scrub(self) -> None:
        """After deleting personal data: copy SQLite's write-ahead log into the database
        file and truncate it, so the old contents are gone from both (with secure_delete).
        PostgreSQL reuses dead rows after VACUUM (autovacuum); see the README."""
        if self.engine.dialect.name != "sqlite":
            return

        def work(conn: Connection) -> None:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

        await self._run(work, commit=False)

    async def close(self) -> None:
        if self._turns is not None:
            await self._turns.close()
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
        found = await self._run(lambda conn: _load(CoreDb(conn), chat_id), commit=False)
        return (None, 0) if found is None else found

    async def save(self, chat_id: int, state: State, version: int) -> bool:
        """Store ``state`` if the row is still at ``version``; False when someone else won."""
        return await self.commit(chat_id, state, version) is not None

    async def commit(
        self, chat_id: int, state: State, version: int, replies: Sequence[str] = ()
    ) -> list[tuple[int, str]] | None:
        """Store ``state`` if the row is still at ``version`` and add ``replies`` (JSON) to
        the chat's outbox, in one transaction; the outbox then (as :meth:`pending`), or
        None when someone else won."""
        try:
            return await self._transaction(
                lambda db: _write(db, chat_id, Change(state, replies), version)
            )
        except (IntegrityError, sqlite3.IntegrityError):
            return None

    async def turn(
        self, chat_id: int, decide: Callable[[State | None, int], Change | None]
    ) -> list[tuple[int, str]] | None:
        """Load the chat's state, ``decide`` what it becomes and commit that, in one
        transaction (a load and a commit made separately cost a trip to the database each).

        ``decide`` gets the state (None when there is none yet) and its version and runs
        where the statements run, inside the transaction (for a SQLite file the loop, or the
        store's thread when another connection is writing; on PostgreSQL the loop); it must
        be quick and must not touch the event loop. It returns the :class:`Change` to
        commit, or None to commit nothing. The outbox after the turn, as :meth:`pending`;
        None when someone else changed the row first (handle it again)."""

        def work(db: Db) -> list[tuple[int, str]] | None:
            found = _load(db, chat_id)
            state, version = (None, 0) if found is None else found
            change = decide(state, version)
            if change is None:
                return _pending(db, chat_id)
            return _write(db, chat_id, change, version)

        try:
            return await self._transaction(work)
        except (IntegrityError, sqlite3.IntegrityError):
            return None

    async def pending(self, chat_id: int) -> list[tuple[int, str]]:
        """The chat's outbox, oldest first: (row id, reply JSON)."""

        return await self._run(lambda conn: _pending(CoreDb(conn), chat_id), commit=False)

    async def sent(self, row_id: int) -> None:
        """The outbox row was sent (or can never be): delete it."""

        await self._transaction(lambda db: db.changed(_SENT, {"row_id": row_id}))

    async def claim_stale(
        self, before: dt.datetime, now: dt.datetime
    ) -> list[tuple[int, int, str]]:
        """Outbox rows older than ``before`` (their sender died or failed), claimed for this
        process: (row id, chat id, reply JSON). A claim moves the row's time to ``now`` only
        if no one else moved it first, so two processes never send the same row."""
        before, now = before.astimezone(dt.UTC), now.astimezone(dt.UTC)

        def work(conn: Connection) -> list[tuple[int, int, str]]:
            stale = conn.execute(
                select(outbox.c.id, outbox.c.chat_id, outbox.c.reply, outbox.c.created_at)
                .where(outbox.c.created_at < before)
                .order_by(outbox.c.id)
            ).all()
            claimed = []
            for row in stale:
                moved = conn.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id, outbox.c.created_at == row.created_at)
                    .values(created_at=now)
                )
                if moved.rowcount == 1:
                    claimed.append((row.id, row.chat_id, row.reply))
            return claimed

        return await self._run(work, commit=True)

    async def purge(self, before: dt.datetime) -> int:
        """Delete conversations untouched since ``before``, and replies as old that were
        never sent; they hold personal data."""
        before = before.astimezone(dt.UTC)

        def work(conn: Connection) -> int:
            result = conn.execute(delete(conversations).where(conversations.c.updated_at < before))
            conn.execute(delete(outbox).where(outbox.c.created_at < before))
            return int(result.rowcount or 0)

        removed = await self._run(work, commit=True)
        if removed:
            await self.scrub()
        return removed

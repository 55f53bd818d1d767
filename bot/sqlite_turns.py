"""A SQLite file's hot path: the statements of a conversation turn through ``sqlite3`` itself.

Every update runs a handful of statements (load, update, outbox insert and read; after
sending, a delete). Through SQLAlchemy each costs 80-100 µs of Python against about 5 µs
for the driver, and each transaction a trip to a worker thread (100-250 µs on this 2-core
host): most of an update's cost (``benchmarks/bench_updates.py``). Here the same Core
statements are compiled once to SQL and run on two plain connections:

- one used on the event loop, which never waits: its transaction starts with ``BEGIN
  IMMEDIATE`` with no busy timeout, so when another connection (the delivery worker,
  another process) holds the write lock it gives up at once, and the transaction runs
  instead
- on a connection of its own in one worker thread, which waits for the lock as every
  other connection does (``busy_timeout``).

A chat's turns never overlap (``Store.chat``), so one may run on the loop and the next in the
thread without changing their order.

A commit in WAL mode with ``synchronous=NORMAL`` writes the log without syncing it; the
one step that syncs, the checkpoint, is left to the thread (after every
``CHECKPOINT_EVERY`` commits on the loop, the turns meanwhile queued behind it there), so
the loop never waits on the disk, and the log is reused instead of growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

T = TypeVar("T")
_DIALECT = sqlite.dialect()
CHECKPOINT_EVERY = 500  # commits on the loop between checkpoints (SQLite's own: 1,000 pages)
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class Prepared:
    """A Core statement as SQLite's driver takes it: SQL, the order of its parameters, and
    how each is converted (datetimes as SQLAlchemy stores them, so both read each other)."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Processor, ...]

    @classmethod
    def of(cls, statement: Executable, keys: Sequence[str]) -> Prepared:
        clause = cast(ClauseElement, statement)  # every Core statement is both
        compiled = cast(SQLCompiler, clause.compile(dialect=_DIALECT, column_keys=list(keys)))
        names = tuple(compiled.positiontup or ())
        processors = tuple(
            compiled.binds[name].type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            for name in names
        )
        return cls(str(compiled), names, processors)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            values[name] if convert is None else convert(values[name])
            for name, convert in zip(self.names, self.processors, strict=True)
        )


_prepared: dict[tuple[Executable, tuple[str, ...]], Prepared] = {}


def prepared(statement: Executable, keys: Sequence[str]) -> Prepared:
    # Keyed by the statement itself (Core statements hash by identity; the hot ones are
    # module constants, built once): held here, its identity is never reused by another.
    key = (statement, tuple(keys))
    found = _prepared.get(key)
    if found is None:
        found = _prepared[key] = Prepared.of(statement, keys)
    return found


class Driver:
    """The statements of a turn on a plain ``sqlite3`` connection (see bot.storage.Db)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, statement: Executable, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        p = prepared(statement, list(values))
        return self.conn.execute(p.sql, p.parameters(values)).fetchall()

    def changed(self, statement: Executable, values: Mapping[str, Any]) -> int:
        p = prepared(statement, list(values))
        return self.conn.execute(p.sql, p.parameters(values)).rowcount

    def insert_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        p = prepared(statement, list(rows[0]))
        self.conn.executemany(p.sql, [p.parameters(row) for row in rows])


class Turns:
    """Transactions on a SQLite file: on the event loop when the write lock is free at once,
    else in one worker thread that waits for it."""

    def __init__(self, path: str, pragmas: Callable[[sqlite3.Connection, Any], None]) -> None:
        self.path = path
        self.pragmas = pragmas
        self._on_loop: sqlite3.Connection | None = None
        self._in_thread: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._commits = 0
        self._checkpointing = False

    def _connect(self, wait: bool) -> sqlite3.Connection:
        # Autocommit mode: the transactions below are begun and ended explicitly.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.pragmas(conn, None)
        if not wait:
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    async def run(self, work: Callable[[Driver], T]) -> T:
        """``work`` in one committed transaction (rolled back if it raises)."""
        if self._checkpointing:
            # Queued behind the checkpoint, which would otherwise wait for a moment with no
            # writer while the loop keeps writing.
            return await self._run_in_thread(work)
        if self._on_loop is None:
            self._on_loop = self._connect(wait=False)
        try:
            self._on_loop.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # locked: someone else is writing
            return await self._run_in_thread(work)
        result = _finish(self._on_loop, work)
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            # Not awaited, and cleared by the thread itself: the loop may not come round to
            # a callback for a while (a turn with nothing to wait for never yields to it).
            self._commits = 0
            self._checkpointing = True
            self._executor().submit(self._checkpoint_now)
        return result

    def _executor(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-turns")
        return self._thread

    def _thread_connection(self) -> sqlite3.Connection:
        """The thread's own connection (opened there, on first use), which waits for locks."""
        if self._in_thread is None:
            self._in_thread = self._connect(wait=True)
        return self._in_thread

    async def _run_in_thread(self, work: Callable[[Driver], T]) -> T:
        def in_thread() -> T:
            conn = self._thread_connection()
            conn.execute("BEGIN IMMEDIATE")
            return _finish(conn, work)

        return await asyncio.get_running_loop().run_in_executor(self._executor(), in_thread)

    def _checkpoint_now(self) -> None:
        try:
            self._thread_connection().execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.Error:
            pass  # tried again after the next CHECKPOINT_EVERY commits
        finally:
            self._checkpointing = False

    async def close(self) -> None:
        if self._on_loop is not None:
            self._on_loop.close()
            self._on_loop = None
        if self._thread is not None:
            thread, self._thread = self._thread, None

            def close_in_thread() -> None:
                if self._in_thread is not None:
                    self._in_thread.close()
                    self._in_thread = None

            await asyncio.get_running_loop().run_in_executor(thread, close_in_thread)
            thread.shutdown()


def _finish(conn: sqlite3.Connection, work: Callable[[Driver], T]) -> T:
    try:
        result = work(Driver(conn))
        conn.execute("COMMIT")
    except BaseException:
        # Whatever failed (the work, or the commit: a full disk), the connection must not
        # stay in the transaction holding the write lock.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return result

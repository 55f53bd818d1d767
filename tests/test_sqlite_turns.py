"""A SQLite file's turns through ``sqlite3`` itself (bot.sqlite_turns, issue 14's step cost):
what they write is what SQLAlchemy reads, they never make the event loop wait for a lock,
and the write-ahead log they fill is checkpointed."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import sqlite_turns
from bot.service import ConversationService
from bot.storage import Store
from conversations.state import Command, Press, State, Step, Text
from policies.loader import default_library

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    await s.init()
    yield s
    await s.close()


def service(store: Store) -> ConversationService:
    return ConversationService(store, default_library(), clock=lambda: NOW)


async def test_what_a_turn_writes_sqlalchemy_reads_and_purges(store: Store) -> None:
    svc = service(store)
    await svc.receive(7, Command("start"), update_id=1)
    await svc.receive(7, Press("region:shangluo"), update_id=2)
    state, version = await store.load(7)  # SQLAlchemy's read of the driver's writes
    assert state is not None and (version, state.step, state.region) == (
        2,
        Step.BIRTH,
        "shangluo",
    )
    # The time is stored as SQLAlchemy stores it (UTC, its format), so the purge, which
    # compares in SQL, keeps a conversation touched after the cut-off and drops it before.
    assert await store.purge(NOW - dt.timedelta(minutes=1)) == 0
    assert await store.purge(NOW + dt.timedelta(minutes=1)) == 1
    assert (await store.load(7))[0] is None


async def test_a_stale_version_loses_on_the_drivers_path_too(store: Store) -> None:
    assert await store.save(9, State(), 0)
    assert not await store.save(9, State(), 0)  # an insert that lost
    assert await store.save(9, State(), 1)
    assert not await store.save(9, State(), 1)  # an update that lost
    assert (await store.load(9))[1] == 2


async def test_a_locked_database_never_holds_up_the_event_loop(
    store: Store, tmp_path: Path
) -> None:
    """Another connection (another process, the delivery worker) holds the write lock: the
    turn waits in the store's thread, and the loop goes on serving other chats."""
    svc = service(store)
    await svc.receive(7, Command("start"), update_id=1)
    other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    turn = asyncio.create_task(svc.receive(7, Press("region:tonghe"), update_id=2))
    ticks = 0
    for _ in range(20):  # 0.2 s with the lock held
        await asyncio.sleep(0.01)
        ticks += 1
    assert not turn.done() and ticks == 20
    other.execute("COMMIT")
    other.close()
    replies = await asyncio.wait_for(turn, 5)
    assert "出生日期" in replies[-1].reply.html  # after /start's reply, never sent here
    state, version = await store.load(7)
    assert state is not None and (state.region, version) == ("tonghe", 2)


async def test_the_write_ahead_log_is_checkpointed(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's connection never checkpoints (that syncs the disk); the thread does,
    every CHECKPOINT_EVERY commits, so the log is reused instead of growing."""
    monkeypatch.setattr(sqlite_turns, "CHECKPOINT_EVERY", 50)
    svc = service(store)
    wal = tmp_path / "bot.db-wal"
    for n in range(600):  # 300 updates, each a turn and a sent reply
        chat = 100 + n % 30
        for item in await svc.receive(chat, Text("1956-03-05"), update_id=n + 1):
            await svc.sent(item)
        await asyncio.sleep(0)  # a checkpoint may start its next batch
    # Without checkpoints these commits fill about 7 MB of log (4 KB pages, a few a commit).
    assert wal.stat().st_size < 1_000_000

"""Storage and the per-update service: commit on every update, redelivery, concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest

from bot.service import ConversationService
from bot.storage import Store
from conversations.state import Command, Press, State, Step, Text
from policies.loader import default_library

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = Store(database_url)
    await s.init()
    yield s
    await s.purge(dt.datetime.max.replace(tzinfo=dt.UTC))  # the server is shared by the whole run
    await s.close()


def service(store: Store) -> ConversationService:
    return ConversationService(store, default_library(), clock=lambda: NOW)


async def test_every_update_is_committed_and_survives_a_new_process(store: Store) -> None:
    svc = service(store)
    await svc.receive(7, Command("start"), update_id=1)
    await svc.receive(7, Press("region:tonghe"), update_id=2)
    await svc.receive(7, Text("2023-02-01"), update_id=3)
    # A second store on the same file stands for a restarted (or another) process.
    other = Store(store.engine.url.render_as_string(hide_password=False))
    state, version = await other.load(7)
    await other.close()
    assert state is not None and version == 3
    assert (state.step, state.region, state.birth_date) == (
        Step.CATEGORIES,
        "tonghe",
        dt.date(2023, 2, 1),
    )


async def test_a_redelivered_update_repeats_only_what_was_not_sent(store: Store) -> None:
    """Issue 13, "intake confirms before handling": an update delivered again is not
    handled twice, and only its replies still in the outbox (the one in flight) go again."""
    svc = service(store)
    for item in await svc.receive(7, Command("start"), update_id=10):
        await svc.sent(item)
    first = await svc.receive(7, Press("region:shangluo"), update_id=11)
    again = await svc.receive(7, Press("region:shangluo"), update_id=11)
    assert again == first and len(first) == 1 and "出生日期" in first[0].reply.html
    await svc.sent(first[0])
    assert await svc.receive(7, Press("region:shangluo"), update_id=11) == []
    state, version = await store.load(7)
    assert state is not None and state.step == Step.BIRTH and version == 2


async def test_an_update_arriving_after_a_newer_one_is_still_applied(store: Store) -> None:
    """Issue 13, "per-chat order": two processes (two stores on one database) get a
    chat's updates out of order; the older one is applied, not taken for a redelivery."""
    first, second = service(store), service(Store(store.engine.url.render_as_string(False)))
    await first.receive(7, Command("start"), update_id=20)
    await first.receive(7, Press("region:shangluo"), update_id=21)
    await first.receive(7, Text("1980-01-01"), update_id=22)
    await second.receive(7, Press("cat:tekun"), update_id=24)
    late = await first.receive(7, Press("cat:dibao"), update_id=23)
    assert "特困" in late[-1].reply.html and "低保" in late[-1].reply.html
    # Interleaved and at the same time: every toggle lands once.
    await asyncio.gather(
        second.receive(7, Press("cat:tekun"), update_id=26),
        first.receive(7, Press("cat:guer"), update_id=25),
    )
    await second.receive(7, Press("cat:tekun"), update_id=26)  # redelivered: not toggled back
    state, _ = await store.load(7)
    await second.store.close()
    assert state is not None and sorted(state.categories) == ["dibao", "guer"]
    assert sorted(state.seen) == [20, 21, 22, 23, 24, 25, 26]


async def test_concurrent_writers_never_lose_an_update(store: Store) -> None:
    svc = service(store)
    await svc.process(7, Command("start"))
    await svc.process(7, Press("region:shangluo"))
    await svc.process(7, Text("1980-01-01"))
    # Two processes toggling different categories at once: both toggles must land.
    await asyncio.gather(
        svc.process(7, Press("cat:dibao")), service(store).process(7, Press("cat:tekun"))
    )
    state, _ = await store.load(7)
    assert state is not None and sorted(state.categories) == ["dibao", "tekun"]


async def test_save_refuses_a_stale_version(store: Store) -> None:
    assert await store.save(1, State(updated_at=NOW), 0)
    assert not await store.save(1, State(updated_at=NOW), 0)  # insert raced
    assert await store.save(1, State(updated_at=NOW), 1)
    assert not await store.save(1, State(updated_at=NOW), 1)  # update raced


async def test_purge_deletes_idle_conversations_only(store: Store) -> None:
    await store.save(1, State(updated_at=NOW - dt.timedelta(days=2)), 0)
    await store.save(2, State(updated_at=NOW), 0)
    assert await store.purge(NOW - dt.timedelta(hours=24)) == 1
    assert (await store.load(1))[0] is None and (await store.load(2))[0] is not None


async def test_purge_counts_retention_in_utc_with_the_bots_time_zone(store: Store) -> None:
    """Issue 13, "the retention purge runs 8 hours late on SQLite": the conversation is
    stamped by the service's China-time clock; a purge 2 hours later with 1 hour of
    retention deletes it (stored China time, compared with a UTC cut-off, it stayed)."""
    svc = service(store)
    await svc.process(7, Command("start"))
    await svc.process(7, Press("region:shangluo"))
    later = NOW.astimezone(dt.UTC) + dt.timedelta(hours=2)
    assert await store.purge(later - dt.timedelta(hours=1)) == 1
    assert (await store.load(7))[0] is None


async def test_a_reply_committed_but_never_sent_is_claimed_once_for_sending(store: Store) -> None:
    """Issue 13, "a reply whose state was committed but whose send did not happen is sent
    on restart": it stays in the outbox; later, one process (not two) claims it."""
    svc = service(store)
    [item] = await svc.receive(7, Command("start"), update_id=1)  # then the process died
    later = NOW + dt.timedelta(minutes=1)
    first = ConversationService(store, default_library(), clock=lambda: later)
    second = ConversationService(store, default_library(), clock=lambda: later)
    claimed = await first.unsent(dt.timedelta(seconds=30))
    assert [(chat, o.reply) for chat, o in claimed] == [(7, item.reply)]
    assert await second.unsent(dt.timedelta(seconds=30)) == []
    await first.sent(claimed[0][1])
    assert await store.pending(7) == []


async def test_a_chats_turns_never_overlap_and_other_chats_go_on(store: Store) -> None:
    """Issue 14: a chat's turn (handle, commit, send) holds the chat. On PostgreSQL the lock
    is in the database, so it holds across processes (two stores); SQLite serves one."""
    other = store
    if store.engine.dialect.name == "postgresql":
        other = Store(store.engine.url.render_as_string(hide_password=False))
    events: list[str] = []
    holding = asyncio.Event()

    async def turn(s: Store, chat_id: int, name: str, hold: float) -> None:
        async with s.chat(chat_id):
            events.append(f"{name} in")
            holding.set()
            await asyncio.sleep(hold)
            # Statements inside the turn run on its connection and see committed work.
            assert await s.load(chat_id) == (None, 0)
            events.append(f"{name} out")

    first = asyncio.create_task(turn(store, 7, "a", 1.0))
    await holding.wait()  # a holds chat 7
    await asyncio.gather(turn(other, 7, "b", 0), turn(other, 8, "c", 0), first)
    if other is not store:
        await other.close()
    # c (another chat) ran while a held chat 7; b waited for a to end.
    assert events.index("c out") < events.index("a out") < events.index("b in"), events

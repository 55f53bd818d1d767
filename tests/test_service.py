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
    await svc.process(7, Command("start"), update_id=1)
    await svc.process(7, Press("region:tonghe"), update_id=2)
    await svc.process(7, Text("2023-02-01"), update_id=3)
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


async def test_a_redelivered_update_is_answered_again_without_advancing(store: Store) -> None:
    svc = service(store)
    await svc.process(7, Command("start"), update_id=10)
    first = await svc.process(7, Press("region:shangluo"), update_id=11)
    again = await svc.process(7, Press("region:shangluo"), update_id=11)
    assert again == first
    state, version = await store.load(7)
    assert state is not None and state.step == Step.BIRTH and version == 2


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

"""Broadcast delivery: pacing, error handling, durability and resumption.

Unit tests run on a fake clock (``sleep`` advances it) against SQLite and a throwaway
PostgreSQL; one real-time test sends through python-telegram-bot to the Bot API stand-in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botapi_stub import BotApiStub
from sqlalchemy import delete
from sqlalchemy.engine import Connection
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.broadcast_store import TABLES, BroadcastStore
from bot.delivery import DeliveryWorker, Pacer
from bot.storage import Store
from conversations.broadcast import Progress

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

TEXTS = {"zh_Hans": "缴费开始", "en": "Collection opens"}


class FakeClock:
    """Time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.start = self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def utc(self) -> dt.datetime:
        """The same time as the stores see it (leases, a chat's last message)."""
        return dt.datetime.fromtimestamp(self.now, dt.UTC)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


class FakeSender:
    """Records (time, chat_id, text) of every attempt; raises what ``faults`` says first."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.attempts: list[tuple[float, int, str]] = []
        self.faults: dict[int, list[Exception]] = {}
        self.always: dict[int, Exception] = {}

    async def __call__(self, chat_id: int, text: str) -> None:
        self.attempts.append((self.clock(), chat_id, text))
        if chat_id in self.always:
            raise self.always[chat_id]
        pending = self.faults.get(chat_id)
        if pending:
            raise pending.pop(0)

    def chats(self) -> list[int]:
        return [chat for _, chat, _ in self.attempts]


def assert_paced(times_by_chat: list[tuple[float, int]], per_second: int, per_chat: float) -> None:
    times = sorted(t for t, _ in times_by_chat)
    # Any window [t, t + 1) holds at most per_second sends <=> sends i and i + n are >= 1 s apart.
    for early, late in zip(times, times[per_second:], strict=False):
        assert late - early >= 1.0 - 1e-9, (early, late)
    last: dict[int, float] = {}
    for t, chat in sorted(times_by_chat):
        if chat in last:
            assert t - last[chat] >= per_chat - 1e-9, (chat, last[chat], t)
        last[chat] = t


# ---------------------------------------------------------------------- storage fixtures


def wipe_broadcasts(conn: Connection) -> None:
    for table in reversed(TABLES):
        conn.execute(delete(table))


@pytest.fixture
async def bstore(database_url: str) -> AsyncIterator[BroadcastStore]:
    store = Store(database_url)
    await store.init()  # the broadcast tables are on the same metadata
    yield BroadcastStore(store)
    await store._run(wipe_broadcasts, commit=True)  # the server is shared by the whole run
    await store.close()


async def subscribe_many(
    bs: BroadcastStore,
    chats: range,
    region: str = "dalate",
    languages: tuple[str, ...] = ("zh_Hans", "en"),
) -> None:
    for chat in chats:
        await bs.subscribe(chat, region, languages[chat % len(languages)])


def on_clock(bs: BroadcastStore, clock: FakeClock) -> BroadcastStore:
    """The same database seen by a worker living on ``clock``."""
    return BroadcastStore(bs.store, clock.utc)


def worker(
    bs: BroadcastStore, clock: FakeClock, sender: FakeSender, per_second: int = 10, **kwargs: object
) -> DeliveryWorker:
    pacer = Pacer(per_second, 1.0, clock=clock, sleep=clock.sleep)
    return DeliveryWorker(on_clock(bs, clock), sender, pacer, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- pacer alone


async def test_pacer_keeps_both_limits_in_every_window() -> None:
    clock = FakeClock()
    pacer = Pacer(20, 1.0, clock=clock, sleep=clock.sleep)
    chats = [c for c in range(30) for _ in range(4)]
    random.Random(6).shuffle(chats)
    sends = []
    for chat in chats:
        async with pacer.sending(chat):
            sends.append((clock(), chat))
    assert_paced(sends, 20, 1.0)


async def test_pacer_sustains_at_least_95_percent_of_the_limit() -> None:
    clock = FakeClock()
    pacer = Pacer(25, clock=clock, sleep=clock.sleep)
    for chat in range(501):
        async with pacer.sending(chat):
            pass
    assert 500 / (clock() - clock.start) >= 0.95 * 25


async def test_interactive_replies_go_first_and_wait_less_than_a_second() -> None:
    pacer = Pacer(50, 0.3)
    sends: list[tuple[float, int]] = []
    stop = False

    async def broadcast() -> None:
        chat = 1000
        while not stop:
            chat += 1
            async with pacer.sending(chat):
                sends.append((time.monotonic(), chat))

    task = asyncio.create_task(broadcast())
    await asyncio.sleep(0.2)
    waits = []
    for i in range(5):
        async with pacer.sending(i, priority=True) as wait:
            waits.append(wait)
            sends.append((time.monotonic(), i))
        await asyncio.sleep(0.05)
    # Right after a reply to the same chat: a conversation is not held by the per-chat
    # interval, only by the overall limit.
    async with pacer.sending(0, priority=True) as wait:
        waits.append(wait)
    stop = True
    await task
    spacing = 1.02 / 50
    assert max(waits) <= 2 * spacing + 0.015, waits
    assert_paced(sends, 50, 0.3 - 0.002)


async def test_a_reply_holds_the_next_broadcast_message_to_that_chat() -> None:
    clock = FakeClock()
    pacer = Pacer(25, 1.0, clock=clock, sleep=clock.sleep)
    async with pacer.sending(7, priority=True):
        replied = clock()
    async with pacer.sending(7, priority=True) as wait:
        assert wait <= 1.02 / 25 + 1e-9
    async with pacer.sending(7):
        assert clock() - replied >= 1.0


async def test_an_interactive_reply_is_never_held_by_retry_after() -> None:
    clock = FakeClock()
    pacer = Pacer(25, 1.0, clock=clock, sleep=clock.sleep)
    async with pacer.sending(1):
        pass
    pacer.hold(30)
    async with pacer.sending(2, priority=True) as wait:
        assert wait <= 1 / 25 * 1.02 + 1e-9
    async with pacer.sending(3) as wait:
        assert wait >= 29


# ---------------------------------------------------------------------- store + worker


async def test_every_subscriber_of_the_region_gets_one_message_in_their_language(
    bstore: BroadcastStore,
) -> None:
    await subscribe_many(bstore, range(1, 31))
    await subscribe_many(bstore, range(100, 105), region="tonghe")
    await bstore.unsubscribe(30)
    bid = await bstore.queue_broadcast("collection_opens", "dalate", 777, TEXTS)
    progress = await bstore.progress(bid)
    assert progress == Progress(bid, "queued", 29, pending=29)

    clock, reports = FakeClock(), []
    sender = FakeSender(clock)

    async def report(p: Progress) -> None:
        reports.append(p)

    w = worker(bstore, clock, sender, on_progress=report, progress_interval=1.0)
    await w.drain()
    assert sorted(sender.chats()) == list(range(1, 30))
    for _, chat, text in sender.attempts:
        assert text == TEXTS["en" if chat % 2 else "zh_Hans"]
    assert_paced([(t, c) for t, c, _ in sender.attempts], 10, 1.0)
    final = await bstore.progress(bid)
    assert final == Progress(bid, "done", 29, sent=29)
    # Roughly one report a second of the 2.9 s, then the final one.
    assert 2 <= len(reports) <= 4 and reports[-1] == final
    assert [r.sent for r in reports] == sorted(r.sent for r in reports)
    (entry,) = await bstore.audit_log(bid)
    assert (entry["actor"], entry["action"]) == (777, "broadcast")
    assert "recipients=29" in entry["detail"]


async def test_a_render_callback_is_called_once_per_language(bstore: BroadcastStore) -> None:
    await subscribe_many(bstore, range(1, 11))
    calls: list[str] = []

    def render(language: str) -> str:
        calls.append(language)
        return f"text in {language}"

    bid = await bstore.queue_broadcast("deadline", "dalate", 1, render)
    assert sorted(calls) == ["en", "zh_Hans"]
    claimed = await bstore.claim_next(3)
    assert [c.text for c in claimed] == ["text in en", "text in zh_Hans", "text in en"]
    assert (await bstore.progress(bid)) == Progress(bid, "sending", 10, pending=7, inflight=3)


async def test_a_failing_render_queues_nothing(bstore: BroadcastStore) -> None:
    await subscribe_many(bstore, range(1, 5))
    with pytest.raises(KeyError):
        await bstore.queue_broadcast("deadline", "dalate", 1, {"zh_Hans": "only one"})
    assert await bstore.claim_next(10) == []
    assert await bstore.recent() == []  # the transaction left no broadcast behind


async def test_two_broadcasts_keep_one_second_between_messages_to_a_chat(
    bstore: BroadcastStore,
) -> None:
    await subscribe_many(bstore, range(1, 4))
    await bstore.queue_broadcast("a", "dalate", 1, TEXTS)
    await bstore.queue_broadcast("b", "dalate", 1, TEXTS)
    clock = FakeClock()
    sender = FakeSender(clock)
    await worker(bstore, clock, sender, per_second=25).drain()
    assert sorted(sender.chats()) == [1, 1, 2, 2, 3, 3]
    assert_paced([(t, c) for t, c, _ in sender.attempts], 25, 1.0)


async def test_retry_after_waits_as_asked_and_retries_the_same_chat(
    bstore: BroadcastStore,
) -> None:
    await subscribe_many(bstore, range(1, 6))
    bid = await bstore.queue_broadcast("a", "dalate", 1, TEXTS)
    clock = FakeClock()
    sender = FakeSender(clock)
    sender.faults[2] = [RetryAfter(7)]
    await worker(bstore, clock, sender).drain()
    assert sender.chats() == [1, 2, 2, 3, 4, 5]
    (t_429, _, _), (t_retry, _, _) = sender.attempts[1:3]
    assert t_retry - t_429 >= 7
    status = await bstore.delivery_status(bid)
    assert status[2] == ("sent", 2, None)
    assert (await bstore.progress(bid)) == Progress(bid, "done", 5, sent=5)


async def test_forbidden_unsubscribes(bstore: BroadcastStore) -> None:
    await subscribe_many(bstore, range(1, 6))
    bid = await bstore.queue_broadcast("a", "dalate", 1, TEXTS)
    clock = FakeClock()
    sender = FakeSender(clock)
    sender.always[3] = Forbidden("Forbidden: bot was blocked by the user")
    await worker(bstore, clock, sender).drain()
    assert sender.chats() == [1, 2, 3, 4, 5]
    assert (await bstore.delivery_status(bid))[3] == ("unsubscribed", 1, "Forbidden")
    assert [s.chat_id for s in await bstore.subscribers("dalate")] == [1, 2, 4, 5]
    sub = await bstore.subscription(3)
    assert sub is not None and sub[1] is False
    assert (await bstore.progress(bid)) == Progress(bid, "done", 5, sent=4, unsubscribed=1)
    # The next broadcast leaves them out; subscribing again brings them back.
    second = await bstore.queue_broadcast("b", "dalate", 1, TEXTS)
    assert (await bstore.progress(second)) == Progress(second, "queued", 4, pending=4)
    await bstore.subscribe(3, "dalate", "en")
    assert [s.chat_id for s in await bstore.subscribers("dalate")] == [1, 2, 3, 4, 5]


async def test_network_errors_back_off_then_fail_and_recover_when_transient(
    bstore: BroadcastStore,
) -> None:
    await subscribe_many(bstore, range(1, 4))
    bid = await bstore.queue_broadcast("a", "dalate", 1, TEXTS)
    clock = FakeClock()
    sender = FakeSender(clock)
    sender.always[1] = NetworkError("connection reset")
    sender.faults[2] = [TimedOut(), TimedOut()]
    await worker(bstore, clock, sender, max_attempts=4, backoff=1.0).drain()
    times_1 = [t for t, chat, _ in sender.attempts if chat == 1]
    gaps = [b - a for a, b in itertools.pairwise(times_1)]
    assert len(times_1) == 4
    assert all(gap >= want for gap, want in zip(gaps, [1.0, 2.0, 4.0], strict=True)), gaps
    status = await bstore.delivery_status(bid)
    assert status[1] == ("failed", 4, "NetworkError")
    assert status[2] == ("sent", 3, None)
    assert status[3] == ("sent", 1, None)
    assert (await bstore.progress(bid)) == Progress(bid, "done", 3, sent=2, failed=1)


async def test_other_errors_are_recorded_per_recipient(bstore: BroadcastStore) -> None:
    await subscribe_many(bstore, range(1, 5))
    bid = await bstore.queue_broadcast("a", "dalate", 1, TEXTS)
    clock = FakeClock()
    sender = FakeSender(clock)
    sender.always[1] = BadRequest("Bad Request: chat not found")  # a NetworkError subclass
    sender.always[2] = ValueError("something with private data in it")
    await worker(bstore, clock, sender).drain()
    assert sender.chats() == [1, 2, 3, 4]  # neither is retried
    status = await bstore.delivery_status(bid)
    assert status[1] == ("failed", 1, "BadRequest")
    assert status[2] == ("failed", 1, "ValueError")
    assert (await bstore.progress(bid)) == Progress(bid, "done", 4, sent=2, failed=2)


async def test_after_a_crash_only_the_sends_in_flight_are_repeated_once_the_lease_ends(
    bstore: BroadcastStore,
) -> None:
    await subscribe_many(bstore, range(1, 11))
    bid = await bstore.queue_broadcast("a", "dalate", 1, TEXTS)
    clock = FakeClock()
    # The crashed process: claimed 1..3 under a 20 s lease, got 1 and 2 out and recorded 1,
    # then was killed.
    crashed = on_clock(bstore, clock)
    claimed = await crashed.claim_next(3, owner="crashed", lease=20)
    assert [c.chat_id for c in claimed] == [1, 2, 3]
    await crashed.mark_sent(bid, 1)
    assert (await bstore.progress(bid)) == Progress(
        bid, "sending", 10, pending=7, inflight=2, sent=1
    )
    killed_at = clock()

    sender = FakeSender(clock)
    await worker(bstore, clock, sender).drain()
    # 2 and 3 again (2 is the repeat), not 1; not before the crashed worker's lease ended
    # (a restarted process takes no row a live worker holds). On SQLite the crashed
    # process also held the sender lease: nothing went before it ended.
    assert sorted(sender.chats()) == list(range(2, 11))
    resent = [t for t, chat, _ in sender.attempts if chat in (2, 3)]
    assert min(resent) >= killed_at + 20
    assert (await bstore.progress(bid)) == Progress(bid, "done", 10, sent=10)


async def test_a_long_text_goes_in_parts_and_a_crash_repeats_no_part_already_sent(
    bstore: BroadcastStore,
) -> None:
    # Three lines of 3,000 characters: Telegram takes 4,096 at most, so one line a message.
    lines = [c * 3000 for c in "甲乙丙"]
    await subscribe_many(bstore, range(1, 3), languages=("en",))
    bid = await bstore.queue_broadcast("a", "dalate", 1, {"en": "\n".join(lines)})
    clock = FakeClock()
    # The crashed process had sent chat 1 its first part (committed), then was killed.
    crashed = on_clock(bstore, clock)
    [first] = await crashed.claim_next(1, owner="crashed", lease=5)
    await crashed.mark_part(bid, first.chat_id, 1)

    sender = FakeSender(clock)
    await worker(bstore, clock, sender).drain()
    parts: dict[int, list[str]] = {1: [], 2: []}
    for _, chat, text in sender.attempts:
        parts[chat].append(text[0])
    assert parts == {1: ["乙", "丙"], 2: ["甲", "乙", "丙"]}
    assert all(len(text) == 3000 for _, _, text in sender.attempts)
    for chat in (1, 2):
        times = [t for t, c, _ in sender.attempts if c == chat]
        assert min(b - a for a, b in itertools.pairwise(times)) >= 1.0  # paced like messages
    assert (await bstore.progress(bid)) == Progress(bid, "done", 2, sent=2)


async def test_cancel_stops_a_broadcast_and_is_audited(bstore: BroadcastStore) -> None:
    await subscribe_many(bstore, range(1, 6))
    bid = await bstore.queue_broadcast("a", "dalate", 1, TEXTS)
    await bstore.claim_next(1)
    await bstore.mark_sent(bid, 1)
    assert await bstore.cancel(bid, actor=42)
    assert not await bstore.cancel(bid, actor=42)
    clock = FakeClock()
    sender = FakeSender(clock)
    await worker(bstore, clock, sender).drain()
    assert sender.attempts == []
    progress = await bstore.progress(bid)
    assert progress == Progress(bid, "cancelled", 5, pending=4, sent=1)
    assert [(e["actor"], e["action"]) for e in await bstore.audit_log(bid)] == [
        (1, "broadcast"),
        (42, "cancel"),
        (42, "cancel"),
    ]


async def test_a_region_without_subscribers_is_done_at_once(bstore: BroadcastStore) -> None:
    bid = await bstore.queue_broadcast("a", "nowhere", 1, TEXTS)
    assert (await bstore.progress(bid)) == Progress(bid, "done", 0)
    assert await bstore.progress(bid + 1) is None
    await bstore.record_audit(99, "refused", "/broadcast by a non-staff user")
    assert [e["action"] for e in await bstore.audit_log()] == ["broadcast", "refused"]


async def test_subscribing_again_moves_region_and_language(bstore: BroadcastStore) -> None:
    await bstore.subscribe(5, "dalate", "zh_Hans")
    await bstore.subscribe(5, "tonghe", "en")
    assert await bstore.subscribers("dalate") == []
    assert [(s.chat_id, s.language) for s in await bstore.subscribers("tonghe")] == [(5, "en")]
    assert await bstore.unsubscribe(5)
    assert not await bstore.unsubscribe(5)
    assert not await bstore.unsubscribe(6)


# ---------------------------------------------------------------------- real time, real PTB


async def test_against_the_bot_api_stand_in_at_100_per_second(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    await store.init()
    bs = BroadcastStore(store)
    chats = range(10_001, 10_301)
    await subscribe_many(bs, chats)
    blocked = {10_007, 10_100, 10_222}
    bid = await bs.queue_broadcast("collection_opens", "dalate", 1, TEXTS)
    with BotApiStub() as stub:
        for chat in blocked:
            stub.fail_next(
                "sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=chat
            )
        stub.fail_next(
            "sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, chat_id=10_150
        )
        bot = Bot(stub.token, base_url=stub.base_url)
        async with bot:

            async def send(chat_id: int, text: str) -> None:
                await bot.send_message(chat_id, text)

            await DeliveryWorker(bs, send, Pacer(100)).drain()
        got: dict[int, int] = {}
        for message in stub.sent_messages():
            got[int(message["chat_id"])] = got.get(int(message["chat_id"]), 0) + 1
        per_second = stub.sends_per_second()
    progress = await bs.progress(bid)
    await store.close()
    assert got == {chat: 1 for chat in chats if chat not in blocked}
    assert max(per_second.values()) <= 100, per_second
    assert progress == Progress(bid, "done", 300, sent=297, unsubscribed=3)

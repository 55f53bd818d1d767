"""End-to-end broadcasts: the real ``python -m bot`` process against the Bot API stand-in.

1. 2,000 subscribers, some of whom blocked the bot or draw a 429, a SIGKILL when about 40 %
   are sent and a restart: everyone gets the announcement, at most the sends in flight at the
   kill twice, within both rate limits, and the blocked chats end up unsubscribed.
2. Two processes on PostgreSQL share a broadcast to 2,000 subscribers; one is SIGKILLed and
   started again: everyone gets it, within both rate limits for the two together.
3. The staff flow over Telegram: residents subscribe (command + button, the 🔔 button under a
   quote), unsubscribe or block the bot; staff preview, confirm and follow the broadcast.

The database is the harness' SQLite file (2's a PostgreSQL database), read (and seeded) here
through ``BroadcastStore``.
Expected texts come from ``conversations.announcements.render``, as the bot renders them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from botapi_stub import BotApiStub, JSONDict
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from test_e2e_bot import WAIT, BotProcess, Chat, Harness

from bot.broadcast_store import BroadcastStore, deliveries, subscriptions
from bot.storage import Store
from conversations import announcements
from conversations.broadcast import Progress, progress_line, progress_text
from conversations.context import Context
from conversations.i18n import LANGUAGE_NAMES
from policies.loader import default_library
from policies.models import Notice

T = TypeVar("T")

STAFF = 900
REGION = "dalate"
TEMPLATE = "collection_opens"
ZONE = ZoneInfo("Asia/Shanghai")  # the bot's default TIMEZONE
BLOCKED_DESCRIPTION = "Forbidden: bot was blocked by the user"


def notice(region: str = REGION) -> Notice:
    """The region's notice the bot announces from (its latest)."""
    notice = default_library().latest(region)
    assert notice is not None, region
    return notice


def announcement(locale: str, day: dt.date) -> str:
    return announcements.render(TEMPLATE, notice(), locale, day)


# Inside 达拉特旗's concentrated period (notice 二（二）: 2022-09-01 to 2023-02-28), when
# its collection_opens announcement may still go out; the bots run on this day (TODAY).
DAY = dt.date(2023, 1, 10)


def china_now() -> dt.datetime:
    return dt.datetime.combine(DAY, dt.datetime.now(ZONE).timetz())


# ----------------------------------------------------------------------------- fixtures


class Db:
    """The bot's database, seen from the test: its own engine and event loop."""

    def __init__(self, url: str) -> None:
        self._runner = asyncio.Runner()
        self.store = Store(url)
        self.broadcasts = BroadcastStore(self.store)
        self.run(self.store.init())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def seed(self, rows: list[dict[str, Any]]) -> None:
        def work(conn: Connection) -> None:
            conn.execute(insert(subscriptions), rows)

        self.run(self.store._run(work, commit=True))

    def progress(self, broadcast_id: int) -> Progress:
        found = self.run(self.broadcasts.progress(broadcast_id))
        assert found is not None, f"no broadcast #{broadcast_id}"
        return found

    def active(self, chat_id: int) -> bool | None:
        """Whether the chat's subscription is active (None: never subscribed)."""
        found = self.run(self.broadcasts.subscription(chat_id))
        return None if found is None else found[1]

    def close(self) -> None:
        self.run(self.store.close())
        self._runner.close()


@pytest.fixture
def db(harness: Harness) -> Iterator[Db]:
    database = Db(f"sqlite+aiosqlite:///{harness.db}")
    try:
        yield database
    finally:
        database.close()


def bot_settings(**extra: str) -> dict[str, str]:
    """Every broadcast setting spelled out: none is inherited from the developer's shell."""
    settings = {
        "STAFF_IDS": str(STAFF),
        "BROADCAST_PER_SECOND": "25",
        "BROADCAST_PER_CHAT_INTERVAL": "1",
        "BROADCAST_CONCURRENCY": "4",
        "BROADCAST_PROGRESS_INTERVAL": "10",
        "BROADCAST_WORKER": "true",
        "BROADCAST_LEASE_SECONDS": "5",  # a killed process's recipients resent 5 s later
        "TIMEZONE": "Asia/Shanghai",
        "TODAY": DAY.isoformat(),
    }
    settings.update(extra)
    return settings


def queue_with_cli(harness: Harness, day: dt.date, settings: dict[str, str]) -> int:
    """``python -m bot broadcast ...`` as staff would run it next to the bot; its id."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "broadcast",
            "--template",
            TEMPLATE,
            "--region",
            REGION,
            "--staff-id",
            str(STAFF),
            "--date",
            day.isoformat(),
        ],
        cwd=harness.tmp_path,
        env=harness.env(settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"已排队公告 #(\d+)（collection_opens，dalate）：(\d+) 位订阅者", done.stdout)
    assert found is not None, done.stdout
    return int(found.group(1))


def wait_until_done(
    harness: Harness, bot: BotProcess, db: Db, broadcast_id: int, timeout: float = 60
) -> Progress:
    deadline = time.monotonic() + timeout
    while True:
        progress = db.progress(broadcast_id)
        if progress.status == "done":
            return progress
        assert bot.alive(), f"bot exited ({bot.proc.returncode}) while sending: {progress}"
        assert time.monotonic() < deadline, f"broadcast not done in time: {progress}"
        time.sleep(0.2)


def send_calls(stub: BotApiStub) -> list[tuple[int, float, int, JSONDict]]:
    """Every sendMessage attempt as (call index, time, chat id, params), failed ones included.

    A request whose body was cut off (the bot SIGKILLed mid-send) reaches the stand-in with
    no parameters; Telegram would refuse it unsent, so it is no attempt at a chat."""
    timed = len(stub.call_times)  # a call is appended before its time
    return [
        (index, t, int(params["chat_id"]), params)
        for index, ((method, params), t) in enumerate(
            zip(stub.calls[:timed], stub.call_times[:timed], strict=True)
        )
        if method == "sendMessage" and "chat_id" in params
    ]


# ----------------------------------------------------------------------------- 1. 2,000 chats

SUBSCRIBERS = 2000
FIRST_CHAT = 700_000
LANGUAGES = ("zh_Hans", "zh_Hant", "en")
RATE = 100
CONCURRENCY = 4
BLOCKED = [FIRST_CHAT + 7 + 50 * i for i in range(40)]  # spread over the whole run
THROTTLED = [FIRST_CHAT + i for i in (150, 450, 1300)]  # two before the kill, one after
KILL_AT = 800  # sendMessage attempts, about 40 %


def seed_subscribers(db: Db) -> dict[int, str]:
    """SUBSCRIBERS subscribers of REGION from FIRST_CHAT on, in turn in each of LANGUAGES;
    their languages by chat."""
    chats = [FIRST_CHAT + i for i in range(SUBSCRIBERS)]
    language = {chat: LANGUAGES[i % len(LANGUAGES)] for i, chat in enumerate(chats)}
    now = dt.datetime.now(dt.UTC)
    db.seed(
        [
            {
                "chat_id": chat,
                "region": REGION,
                "language": language[chat],
                "active": True,
                "subscribed_at": now,
                "updated_at": now,
            }
            for chat in chats
        ]
    )
    return language


def test_two_thousand_subscribers_with_faults_kill_and_restart(harness: Harness, db: Db) -> None:
    stub = harness.stub
    day = china_now().date()
    language = seed_subscribers(db)
    chats = list(language)
    assert not set(BLOCKED) & set(THROTTLED)
    for chat in BLOCKED:
        stub.fail_next("sendMessage", 403, BLOCKED_DESCRIPTION, chat_id=chat, count=10)
    for chat in THROTTLED:
        stub.fail_next(
            "sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, chat_id=chat
        )
    expected = {locale: announcement(locale, day) for locale in LANGUAGES}

    settings = bot_settings(
        BROADCAST_PER_SECOND=str(RATE),
        BROADCAST_PER_CHAT_INTERVAL="1",
        BROADCAST_CONCURRENCY=str(CONCURRENCY),
    )
    first = harness.launch(**settings)
    broadcast_id = queue_with_cli(harness, day, settings)
    assert db.progress(broadcast_id).total == SUBSCRIBERS

    # SIGKILL once about 40 % went out.
    deadline = time.monotonic() + 60
    while stub.methods().count("sendMessage") < KILL_AT:
        assert first.alive(), "the bot exited while sending"
        assert time.monotonic() < deadline, "the broadcast did not get going"
        time.sleep(0.01)
    first.sigkill()
    at_kill = db.run(db.broadcasts.delivery_status(broadcast_id))
    inflight = sum(status == "inflight" for status, _, _ in at_kill.values())
    sent_at_kill = sum(status == "sent" for status, _, _ in at_kill.values())
    assert 0 < sent_at_kill < SUBSCRIBERS // 2, sent_at_kill
    assert inflight <= CONCURRENCY  # claims committed, outcomes not

    second = harness.launch(**settings)
    progress = wait_until_done(harness, second, db, broadcast_id)
    time.sleep(0.2)  # a stray send after "done" would show here

    # Every non-blocked subscriber got the announcement in their language, once, or twice for
    # the few sends in flight at the kill; nobody got anything else.
    received: dict[int, list[str]] = defaultdict(list)
    for record in stub.sent_messages():
        received[int(record["chat_id"])].append(str(record["text"]))
    # The CLI's staff id gets the progress, ending with the final counts.
    reports = received.pop(STAFF)
    assert "已完成" in reports[-1], reports[-1]
    assert f"已发送 {SUBSCRIBERS - len(BLOCKED)}，失败 0，已拉黑退订 {len(BLOCKED)}" in reports[-1]
    assert set(received) <= set(chats)
    blocked = set(BLOCKED)
    for chat in chats:
        texts = received.get(chat, [])
        if chat in blocked:
            assert texts == [], chat
            continue
        assert texts, f"chat {chat} got nothing"
        assert set(texts) == {expected[language[chat]]}, (chat, language[chat], texts[0][:80])
    times = Counter(len(received[chat]) for chat in chats if chat not in blocked)
    assert max(times) <= 2, times
    twice = {chat for chat in chats if len(received[chat]) == 2}
    assert twice <= {chat for chat, (s, _, _) in at_kill.items() if s == "inflight"}, twice
    assert len(twice) <= inflight <= CONCURRENCY

    # Blocked chats: unsubscribed, subscription ended.
    status = db.run(db.broadcasts.delivery_status(broadcast_id))
    for chat in BLOCKED:
        assert status[chat][0] == "unsubscribed", (chat, status[chat])
        assert status[chat][2] == "Forbidden"
        assert db.active(chat) is False, chat
    assert all(status[c][0] == "sent" for c in chats if c not in blocked)
    assert db.active(chats[0]) is True

    # The counts.
    assert progress.status == "done" and progress.total == SUBSCRIBERS
    assert progress.sent == SUBSCRIBERS - len(BLOCKED)
    assert progress.unsubscribed == len(BLOCKED)
    assert progress.failed == progress.pending == progress.inflight == 0

    # Pacing: the overall limit per second, one send per second per chat.
    calls = send_calls(stub)
    assert max(stub.sends_per_second().values()) <= RATE, stub.sends_per_second()
    by_chat: dict[int, list[float]] = defaultdict(list)
    for _, t, chat, _ in calls:
        if chat != STAFF:  # progress messages take the interactive lane, not paced per chat
            by_chat[chat].append(t)
    for chat, stamps in by_chat.items():
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(gap >= 1.0 for gap in gaps), (chat, gaps)

    # A 429 holds the broadcast for retry_after, then the same chat is tried again. Only the
    # sends the other slots had already started when the 429 came back may still go out
    # within that second (at most CONCURRENCY - 1; in practice none).
    failed = {index for index, _, _, _ in calls} - {int(r["index"]) for r in stub.sent_messages()}
    for chat in THROTTLED:
        attempts = [(i, t) for i, t, c, _ in calls if c == chat]
        (index, t_fail), *later = attempts
        assert index in failed, chat
        assert later and later[0][0] not in failed, (chat, attempts)
        assert later[0][1] - t_fail >= 1.0, (chat, later[0][1] - t_fail)
        held = [t - t_fail for i, t, _, _ in calls if i > index and t - t_fail < 1.0]
        assert len(held) <= CONCURRENCY - 1, (chat, held)


# ----------------------------------------------------------------------------- 2. two processes


def held_by_process(db: Db, pid: int) -> set[int]:
    """Chats whose delivery the bot process ``pid`` holds in flight (its lease owner id
    is host:pid:random)."""

    def work(conn: Connection) -> set[int]:
        held = select(deliveries.c.chat_id).where(
            deliveries.c.status == "inflight", deliveries.c.lease_owner.like(f"%:{pid}:%")
        )
        return {int(chat) for chat in conn.execute(held).scalars()}

    return db.run(db.store._run(work, commit=False))


def sending_processes(db: Db, broadcast_id: int) -> set[str]:
    """The pids whose workers recorded deliveries of the broadcast (the last holder's)."""

    def work(conn: Connection) -> set[str]:
        owners = select(deliveries.c.lease_owner).where(
            deliveries.c.broadcast_id == broadcast_id, deliveries.c.status == "sent"
        )
        return {str(owner).split(":")[-2] for owner in conn.execute(owners.distinct()).scalars()}

    return db.run(db.store._run(work, commit=False))


def test_two_processes_on_postgres_share_a_broadcast_one_killed_and_restarted(
    harness: Harness, postgres_db: str
) -> None:
    """Two ``python -m bot`` processes on one PostgreSQL database send one broadcast to
    2,000 subscribers; one is SIGKILLed at about 40 % and started again. Everyone gets it,
    at most the killed process's sends in flight twice, and the limits hold for the two
    processes together."""
    stub = harness.stub
    db = Db(postgres_db)  # migrates it
    try:
        day = china_now().date()
        language = seed_subscribers(db)
        chats = list(language)
        expected = {locale: announcement(locale, day) for locale in LANGUAGES}
        settings = bot_settings(
            DATABASE_URL=postgres_db,
            BROADCAST_PER_SECOND=str(RATE),
            BROADCAST_CONCURRENCY=str(CONCURRENCY),
        )
        first, second = harness.launch(**settings), harness.launch(**settings)
        broadcast_id = queue_with_cli(harness, day, settings)

        deadline = time.monotonic() + 120
        while stub.methods().count("sendMessage") < KILL_AT:
            assert first.alive() and second.alive(), "a bot exited while sending"
            assert time.monotonic() < deadline, "the broadcast did not get going"
            time.sleep(0.01)
        first.sigkill()
        held = held_by_process(db, first.pid)  # claimed, outcome not recorded
        assert len(held) <= CONCURRENCY
        restarted = harness.launch(**settings)
        progress = wait_until_done(harness, restarted, db, broadcast_id, timeout=120)
        time.sleep(0.2)  # a stray send after "done" would show
        processes = sending_processes(db, broadcast_id)
    finally:
        db.close()

    assert progress.sent == SUBSCRIBERS and progress.total == SUBSCRIBERS
    assert second.alive() and restarted.alive()
    # All three processes delivered: the first until the kill, the others to the end.
    assert processes == {str(first.pid), str(second.pid), str(restarted.pid)}, processes
    received: dict[int, list[str]] = defaultdict(list)
    for record in stub.sent_messages():
        received[int(record["chat_id"])].append(str(record["text"]))
    received.pop(STAFF, None)  # progress reports
    assert set(received) == set(chats)
    for chat in chats:
        assert set(received[chat]) == {expected[language[chat]]}, chat
    twice = {chat for chat in chats if len(received[chat]) > 1}
    assert all(len(received[chat]) == 2 for chat in twice)
    assert twice <= held, (twice, held)
    # The overall limit for both processes together, and one second between two messages
    # to a chat (a repeat after the kill included).
    assert max(stub.sends_per_second().values()) <= RATE, stub.sends_per_second()
    by_chat: dict[int, list[float]] = defaultdict(list)
    for _, t, chat, _ in send_calls(stub):
        by_chat[chat].append(t)
    by_chat.pop(STAFF, None)
    for chat, stamps in by_chat.items():
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(stamps)), (chat, stamps)


# ----------------------------------------------------------------------------- 3. staff flow


def subscribe_with_command(chat: Chat) -> None:
    reply = chat.send("/subscribe")
    offered = [b["callback_data"] for row in reply["reply_markup"]["inline_keyboard"] for b in row]
    assert f"sub:{REGION}" in offered, offered
    reply = chat.press(f"sub:{REGION}")
    assert reply["text"].startswith("🔔"), reply["text"]


def subscribe_under_a_quote(chat: Chat) -> JSONDict:
    """A whole quote conversation, then the 🔔 button under the quote."""
    chat.send("/start")
    chat.press(f"region:{REGION}")
    chat.send("1980-05-01")
    chat.press("cat:none")
    quote = chat.send("2022-10-10")  # in dalate-2023's concentrated enrolment period
    assert quote["text"].count("\n") > 3, quote["text"]  # the quote, not another question
    reply = chat.press(f"sub:{REGION}")  # on the quote's keyboard (press() checks)
    assert reply["text"].startswith("🔔"), reply["text"]
    return quote


def test_staff_broadcast_over_telegram(harness: Harness, db: Db) -> None:
    stub = harness.stub
    harness.launch(**bot_settings())
    day = china_now().date()
    hans = Chat(stub, chat_id=5001, language="zh-hans")
    english = Chat(stub, chat_id=5002, language="en")
    hant = Chat(stub, chat_id=5003, language="zh-hant")
    leaver = Chat(stub, chat_id=5004, language="zh-hant")
    blocker = Chat(stub, chat_id=5005, language="zh-hans")
    staff = Chat(stub, chat_id=STAFF, language="zh-hans")

    def hans_flow() -> None:
        subscribe_with_command(hans)
        reply = hans.send("/broadcast")  # not staff: refused (and audited, checked below)
        assert "只供医保经办工作人员使用" in reply["text"], reply["text"]

    def english_flow() -> None:
        quote = subscribe_under_a_quote(english)
        assert "Dalad" in quote["text"], quote["text"]

    def leaver_flow() -> None:
        subscribe_with_command(leaver)
        reply = leaver.send("/unsubscribe")
        assert "達拉特旗" in reply["text"], reply["text"]

    def blocker_flow() -> None:
        subscribe_with_command(blocker)
        update = stub.block_bot(blocker.chat_id)
        harness.wait_confirmed(int(update["update_id"]))

    # The residents at once (each chat's replies are a second apart, the chats are not).
    flows = (hans_flow, english_flow, lambda: subscribe_with_command(hant), leaver_flow)
    with ThreadPoolExecutor(max_workers=5) as pool:
        for future in [pool.submit(flow) for flow in (*flows, blocker_flow)]:
            future.result()
    deadline = time.monotonic() + WAIT
    while db.active(blocker.chat_id) is not False:  # on_member ran after the confirmation
        assert time.monotonic() < deadline, "blocking the bot did not end the subscription"
        time.sleep(0.05)
    assert db.active(leaver.chat_id) is False
    assert db.active(hans.chat_id) is db.active(english.chat_id) is db.active(hant.chat_id) is True
    refused = [row for row in db.run(db.broadcasts.audit_log()) if row["action"] == "refused"]
    assert [(r["actor"], r["detail"]) for r in refused] == [(hans.chat_id, "command=broadcast")]

    # Staff: template, region, preview exactly as residents will get it, audience, send.
    staff.send("/broadcast")
    staff.press(f"bc:t:{TEMPLATE}")
    preview = staff.press(f"bc:r:{REGION}")
    assert preview["text"] == announcement("zh_Hans", day)
    summary = stub.wait_for_message(STAFF, after_index=preview["index"] + 1, timeout=WAIT)
    assert "3 位订阅者" in summary["text"], summary["text"]
    for locale in ("zh_Hans", "zh_Hant", "en"):  # the leaver and the blocker are not counted
        assert f"{LANGUAGE_NAMES[locale]} 1 人" in summary["text"], summary["text"]
    queued = staff.press("bc:send")
    found = re.search(r"公告 #(\d+)", queued["text"])
    assert found is not None and "已排队" in queued["text"], queued["text"]
    broadcast_id = int(found.group(1))

    # Each subscriber gets it in their own language; the leaver and the blocker nothing.
    for chat, locale in ((hans, "zh_Hans"), (english, "en"), (hant, "zh_Hant")):
        text = announcement(locale, day)
        got = stub.wait_for_message(chat.chat_id, contains=text[:40], timeout=WAIT)
        assert got["text"] == text, (locale, got["text"][:80])

    # The staff chat hears how it went, with the final counts.
    report = stub.wait_for_message(
        STAFF, contains="已完成", after_index=queued["index"], timeout=WAIT
    )
    progress = db.progress(broadcast_id)
    assert progress.status == "done"
    assert (progress.total, progress.sent, progress.failed, progress.unsubscribed) == (3, 3, 0, 0)
    ctx = Context(default_library(), china_now())
    assert report["text"] == progress_text(progress, ctx), report["text"]
    assert "已发送 3，失败 0，已拉黑退订 0，剩余 0（共 3）" in report["text"]

    status = staff.send("/broadcast_status")
    assert progress_line(progress, ctx) in status["text"], status["text"]
    assert "已完成" in status["text"]

    audited = db.run(db.broadcasts.audit_log(broadcast_id))
    assert [(r["actor"], r["action"]) for r in audited] == [(STAFF, "broadcast")]
    for chat in (leaver, blocker):
        assert not [t for t in chat.texts() if "📢" in t], chat.chat_id
    for chat in (hans, english, hant):
        assert sum("📢" in t for t in chat.texts()) == 1, chat.texts()

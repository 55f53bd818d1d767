"""Cost per Telegram update of a whole conversation step, against a bare PTB handler and a
bare handler that also stores one row durably.

Run by hand: ``.venv/bin/python benchmarks/bench_updates.py`` (goal: ours <= 2x the anchor,
"bare reply + one durable upsert"); ``benchmarks/bench_webhook.py`` measures the same over
real HTTP.

Both applications run in-process, with no network: their Bot API requests go to
:class:`FakeBotApi`, a ``BaseRequest`` that encodes the parameters as the HTTP transport
would and answers with canned, successful JSON (a ``Message`` echoing the text and keyboard
for ``sendMessage``/``editMessageText``, ``True`` for the rest). Updates are built up front
(``Update.de_json``) and fed one after the other to ``Application.process_update``.

- Ours is ``bot.telegram_app.build_application`` with its real handlers, post_init (Store on
  a SQLite file in a temporary directory, WAL) and ``ConversationService``. Each chat goes
  through a complete conversation: /start, press a region, type a birth date, press a
  category (the message is edited), press "done", press a tier where the region has tiers,
  type a payment date (the quote is rendered). The regions, categories and dates cycle over
  every loaded notice; the chats' steps are interleaved, as real traffic is.
- Bare is an ``Application`` whose only handler is ``await update.message.reply_text("ok")``,
  fed a text message for each of the same updates (same chats, same texts).
- The anchor is the same bare handler, but it first upserts one small row per chat
  (``INSERT … ON CONFLICT DO UPDATE``) in a SQLite file in WAL mode with
  ``synchronous=NORMAL``, committed per update, as a careful bare bot would: in a worker
  thread (one connection kept in one thread), because a commit can wait on another
  process's lock (busy timeout) or on a checkpoint's fsync, which must not stall every
  other chat. The same upsert run directly on the event loop is shown too, for reference.

Every round uses fresh update ids (ours ignores an update id it has already handled). The
figures are the medians over the rounds of (round time / updates), wall time and CPU time
of the process (``time.process_time``: every thread; what scales, and what other jobs on a
shared machine disturb least); a warm-up round comes first.
A last, instrumented round splits our time into ConversationService.process (load, handle,
save) and sending, so the headline figures carry no instrumentation.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import itertools
import json
import logging
import sqlite3
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from pydantic import SecretStr
from telegram import Bot, Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters
from telegram.request import BaseRequest, RequestData

from bot import metrics, telegram_app
from bot.config import Settings
from bot.service import ConversationService
from conversations import resident
from conversations.state import Step
from policies.loader import default_library

TOKEN = "123456:BENCHMARK-TOKEN"
BOT_USER = {
    "id": 123456,
    "is_bot": True,
    "first_name": "居民医保助手",
    "username": "bench_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
GOAL = 2.0  # ours / the anchor
FIRST_CHAT = 10_000_000

T = TypeVar("T")
App = Application[Any, Any, Any, Any, Any, Any]


# -- the Bot API stand-in -----------------------------------------------------------------


@dataclass
class FakeBotApi(BaseRequest):
    """Answers every Bot API method successfully, in-process; counts calls and its own time."""

    calls: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0  # spent in the fake itself
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = None,
        write_timeout: object = None,
        connect_timeout: object = None,
        pool_timeout: object = None,
    ) -> tuple[int, bytes]:
        start = time.perf_counter()
        api_method = url.rsplit("/", 1)[-1]
        params: dict[str, Any] = {}
        if request_data is not None:
            request_data.url_encoded_parameters()  # what the HTTP transport would send
            params = request_data.parameters
        body = json.dumps({"ok": True, "result": self._result(api_method, params)})
        self.calls[api_method] += 1
        self.seconds += time.perf_counter() - start
        return 200, body.encode()

    def _result(self, api_method: str, params: dict[str, Any]) -> object:
        if api_method == "getMe":
            return BOT_USER
        if api_method in ("sendMessage", "editMessageText"):
            message_id = params.get("message_id") or next(self._ids)
            sent: dict[str, Any] = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": params["chat_id"], "type": "private", "first_name": "Resident"},
                "from": BOT_USER,
                "text": params["text"],
            }
            if "reply_markup" in params:
                sent["reply_markup"] = params["reply_markup"]
            return sent
        return True


# -- the traffic ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    kind: str  # "text" or "press"
    value: str


def scripts() -> list[list[Move]]:
    """One complete conversation per (region, category), dates inside the notices' windows."""
    lib = default_library()
    out = []
    for i, notice in enumerate(lib.notices):
        window = notice.windows[0]
        paid = window.start or window.end - dt.timedelta(days=30)
        for j, cat in enumerate(notice.categories):
            born = dt.date(1960 + (i * 7 + j) % 50, 1 + j % 12, 1 + (i + j) % 28)
            steps = [
                Move("text", "/start"),
                Move("press", f"region:{notice.region.id}"),
                Move("text", born.isoformat()),
                Move("press", f"cat:{cat.id}"),
                Move("press", "cat:done"),
            ]
            if notice.tiers:
                steps.append(Move("press", f"tier:{notice.tiers[j % len(notice.tiers)].id}"))
            steps.append(Move("text", paid.isoformat()))
            out.append(steps)
    return out


def _chat(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "type": "private", "first_name": "Resident"}


def _user(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "is_bot": False, "first_name": "Resident", "language_code": "zh-hans"}


def update_dict(update_id: int, chat_id: int, step: Move, as_text: bool) -> dict[str, Any]:
    now = int(time.time())
    if step.kind == "press" and not as_text:
        return {
            "update_id": update_id,
            "callback_query": {
                "id": str(update_id),
                "from": _user(chat_id),
                "chat_instance": str(chat_id),
                "data": step.value,
                "message": {
                    "message_id": 7,
                    "date": now,
                    "chat": _chat(chat_id),
                    "from": BOT_USER,
                    "text": "…",
                },
            },
        }
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": now,
        "chat": _chat(chat_id),
        "from": _user(chat_id),
        "text": step.value,
    }
    if step.value.startswith("/"):
        length = len(step.value.split()[0])
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    return {"update_id": update_id, "message": message}


@dataclass
class Traffic:
    chats: int
    scripts: list[list[Move]] = field(default_factory=scripts)
    _update_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def dicts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every chat's whole conversation, steps interleaved; the same updates as text."""
        plan = [self.scripts[c % len(self.scripts)] for c in range(self.chats)]
        ours, bare = [], []
        for index in range(max(len(s) for s in plan)):
            for c, script in enumerate(plan):
                if index < len(script):
                    uid = next(self._update_ids)
                    chat = FIRST_CHAT + c
                    ours.append(update_dict(uid, chat, script[index], False))
                    bare.append(update_dict(uid, chat, script[index], True))
        return ours, bare

    def round(self, bot_ours: Bot, bot_bare: Bot) -> tuple[list[Update], list[Update]]:
        ours, bare = self.dicts()
        return (
            [Update.de_json(u, bot_ours) for u in ours],
            [Update.de_json(u, bot_bare) for u in bare],
        )


# -- the two applications --------------------------------------------------------------------


def bench_settings(directory: Path, **more: Any) -> Settings:
    return Settings(
        bot_token=SecretStr(TOKEN),
        database_url=f"sqlite+aiosqlite:///{directory}/bench.db",
        # Every reply is paced now: lift the limits so this keeps measuring processing cost.
        broadcast_per_second=1_000_000,
        broadcast_per_chat_interval=0,
        **more,
    )


def offline_application(settings: Settings) -> tuple[App, FakeBotApi]:
    """Our application as ``bot.telegram_app`` builds it, its Bot API calls answered by a
    :class:`FakeBotApi`; not initialized."""
    api = FakeBotApi()

    def offline_builder() -> Any:
        return ApplicationBuilder().request(api).get_updates_request(FakeBotApi())

    def offline_request(connection_pool_size: int | None = None) -> FakeBotApi:
        return api if connection_pool_size else FakeBotApi()  # the getUpdates one: unused

    with (
        mock.patch.object(telegram_app, "ApplicationBuilder", offline_builder),
        mock.patch.object(metrics, "CountingRequest", offline_request),
    ):
        return telegram_app.build_application(settings), api


async def ours_app(directory: Path) -> tuple[App, FakeBotApi]:
    app, api = offline_application(bench_settings(directory))
    await app.initialize()
    assert app.post_init is not None  # initialize() does not run it; run_polling would
    await app.post_init(app)
    await app.bot_data["faq_warmup"]  # the FAQ index loads in a thread: not while measuring
    return app, api


async def bare_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    await update.message.reply_text("ok")


async def bare_app() -> tuple[App, FakeBotApi]:
    api = FakeBotApi()
    app = ApplicationBuilder().token(TOKEN).request(api).get_updates_request(FakeBotApi()).build()
    app.add_handler(MessageHandler(filters.TEXT, bare_reply))
    await app.initialize()
    return app, api


class Upserts:
    """One small row per chat in a SQLite file (WAL, synchronous=NORMAL), an upsert committed
    per update: in one worker thread that keeps the connection (``threaded``), or directly
    on the event loop."""

    SQL = (
        "INSERT INTO chats (chat_id, last_text, updates, updated_at) VALUES (?, ?, 1, ?) "
        "ON CONFLICT (chat_id) DO UPDATE SET last_text = excluded.last_text, "
        "updates = updates + 1, updated_at = excluded.updated_at"
    )

    def __init__(self, path: Path, threaded: bool) -> None:
        self.thread = ThreadPoolExecutor(1) if threaded else None
        self.conn = self._in_own_thread(lambda: self._connect(path))

    def _in_own_thread(self, work: Callable[[], T]) -> T:
        return self.thread.submit(work).result() if self.thread else work()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)  # autocommit: each upsert commits
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS chats (chat_id INTEGER PRIMARY KEY, last_text TEXT, "
            "updates INTEGER NOT NULL, updated_at REAL NOT NULL)"
        )
        return conn

    def _upsert(self, chat_id: int, text: str) -> None:
        self.conn.execute(self.SQL, (chat_id, text[:64], time.time()))

    async def upsert(self, chat_id: int, text: str) -> None:
        if self.thread is None:
            self._upsert(chat_id, text)
            return
        await asyncio.get_running_loop().run_in_executor(self.thread, self._upsert, chat_id, text)

    def close(self) -> None:
        self._in_own_thread(self.conn.close)
        if self.thread is not None:
            self.thread.shutdown()


async def anchor_app(upserts: Upserts) -> tuple[App, FakeBotApi]:
    """The bare handler, storing one row per update before it replies."""

    async def reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        assert message is not None
        await upserts.upsert(message.chat_id, message.text or "")
        await message.reply_text("ok")

    api = FakeBotApi()
    app = ApplicationBuilder().token(TOKEN).request(api).get_updates_request(FakeBotApi()).build()
    app.add_handler(MessageHandler(filters.TEXT, reply))
    await app.initialize()
    return app, api


async def close(app: App) -> None:
    await app.shutdown()
    if app.post_shutdown is not None:
        await app.post_shutdown(app)


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """Seconds per update: wall time, and CPU time of the whole process."""

    wall: float
    cpu: float


async def run_round(app: App, updates: list[Update]) -> Cost:
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    for update in updates:
        await app.process_update(update)
    n = len(updates)
    return Cost((time.perf_counter() - start) / n, (time.process_time() - cpu) / n)


class ErrorCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@dataclass
class Timer:
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def wrap(self, name: str, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def timed(*args: Any, **kwargs: Any) -> T:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed

    def wrap_sync(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed


@contextmanager
def instrumented(service: ConversationService, timer: Timer) -> Iterator[None]:
    store = service.store
    with ExitStack() as stack:
        for target, name in (
            (service, "receive"),
            (store, "turn"),  # absent before it existed: this measures older commits too
            (store, "load"),
            (store, "commit"),
            (store, "sent"),
        ):
            if hasattr(target, name):
                method = getattr(target, name)
                stack.enter_context(mock.patch.object(target, name, timer.wrap(name, method)))
        stack.enter_context(
            mock.patch("bot.service.handle", timer.wrap_sync("handle", resident.handle))
        )
        stack.enter_context(
            mock.patch.object(telegram_app, "send", timer.wrap("send", telegram_app.send))
        )
        yield


async def check_conversations(service: ConversationService, chats: int) -> None:
    """Every chat must have reached a rendered quote, or the benchmark measured error paths."""
    for c in range(chats):
        state, _ = await service.store.load(FIRST_CHAT + c)
        assert state is not None and state.step == Step.QUOTED, (c, state)
        assert await service.store.pending(FIRST_CHAT + c) == []  # every reply was sent


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"


def _median(costs: list[Cost]) -> Cost:
    return Cost(statistics.median(c.wall for c in costs), statistics.median(c.cpu for c in costs))


def _spread(values: list[float]) -> str:
    return f"{min(values) * 1e6:,.0f}–{max(values) * 1e6:,.0f} µs"


async def main(chats: int, rounds: int) -> float:
    errors = ErrorCount()
    logging.getLogger().addHandler(errors)
    traffic = Traffic(chats)
    with tempfile.TemporaryDirectory() as tmp:
        ours, ours_api = await ours_app(Path(tmp))
        bare, bare_api = await bare_app()
        upserts = Upserts(Path(tmp) / "anchor.db", threaded=True)
        upserts_direct = Upserts(Path(tmp) / "anchor-direct.db", threaded=False)
        anchor, _ = await anchor_app(upserts)
        direct, _ = await anchor_app(upserts_direct)
        apps = {"ours": ours, "bare": bare, "anchor": anchor, "direct": direct}
        service: ConversationService = ours.bot_data["service"]

        def one_round() -> dict[str, list[Update]]:
            as_pressed, as_text = traffic.dicts()
            return {
                name: [
                    Update.de_json(u, app.bot) for u in (as_pressed if name == "ours" else as_text)
                ]
                for name, app in apps.items()
            }

        try:
            for name, warm_up in one_round().items():  # warm-up: creates rows, fills caches
                await run_round(apps[name], warm_up)
                n = len(warm_up)
            await check_conversations(service, chats)
            costs: dict[str, list[Cost]] = {name: [] for name in apps}
            for r in range(rounds):
                this_round = one_round()
                order = list(apps)
                order = order[r % len(order) :] + order[: r % len(order)]  # drift hurts no one
                for name in order:
                    costs[name].append(await run_round(apps[name], this_round[name]))
            await check_conversations(service, chats)

            ours_calls, bare_calls = Counter(ours_api.calls), Counter(bare_api.calls)
            ours_fake, bare_fake = ours_api.seconds, bare_api.seconds
            timer = Timer()
            ours_updates = one_round()["ours"]
            with instrumented(service, timer):
                breakdown_total = (await run_round(ours, ours_updates)).wall
            ours_fake_last = ours_api.seconds - ours_fake
            calls_last = ours_api.calls - ours_calls
        finally:
            for app in apps.values():
                await close(app)
            upserts.close()
            upserts_direct.close()
    assert errors.count == 0, f"{errors.count} errors were logged"

    median = {name: _median(c) for name, c in costs.items()}
    measured = n * rounds
    print(f"updates per round: {n} ({chats} chats, {n / chats:.1f} steps each), rounds: {rounds}")
    print(f"updates measured per application: {measured} (+ {n} warm-up)")
    print("per update, median over the rounds (spread):    wall               CPU")
    for name, label in (
        ("bare", "bare PTB reply_text"),
        ("anchor", "anchor: bare + upsert (thread)"),
        ("direct", "  the upsert on the loop instead"),
        ("ours", "ours, full step"),
    ):
        m, c = median[name], costs[name]
        print(
            f"  {label:<33}{us(m.wall)} ({_spread([x.wall for x in c])})"
            f"  {us(m.cpu)} ({_spread([x.cpu for x in c])})"
        )
    ratio = median["ours"].wall / median["anchor"].wall
    ratio_cpu = median["ours"].cpu / median["anchor"].cpu
    for label, wall, cpu in (
        ("ours / anchor", ratio, ratio_cpu),
        (
            "ours / anchor on the loop",
            *(
                median["ours"].wall / median["direct"].wall,
                median["ours"].cpu / median["direct"].cpu,
            ),
        ),
        (
            "ours / bare",
            median["ours"].wall / median["bare"].wall,
            median["ours"].cpu / median["bare"].cpu,
        ),
    ):
        print(f"ratio {label:<27} wall {wall:5.2f}x   CPU {cpu:5.2f}x")
    verdict = "meets" if max(ratio, ratio_cpu) <= GOAL else "MISSES"
    paired = sorted(o.cpu / a.cpu for o, a in zip(costs["ours"], costs["anchor"], strict=True))
    print(f"  per-round CPU ratios ours/anchor: {', '.join(f'{r:.2f}' for r in paired)}")
    print(f"  ({verdict} the goal ours/anchor <= {GOAL}x)")
    print()
    total_warm = n * (rounds + 1)
    print("Bot API calls per update (the fake API's own time is included above):")
    for name, calls in (("ours", ours_calls), ("bare", bare_calls)):
        per = ", ".join(
            f"{m} {c / total_warm:.2f}" for m, c in sorted(calls.items()) if c >= total_warm / 100
        )
        print(f"  {name}: {per}")
    print(
        f"  fake API time per update: ours {us(ours_fake / total_warm)}, "
        f"bare {us(bare_fake / total_warm)}"
    )
    print()
    print(f"Breakdown of ours (one instrumented round, wall {us(breakdown_total)}/update):")
    part = defaultdict(float, {name: seconds / n for name, seconds in timer.seconds.items()})
    rest = breakdown_total - part["receive"] - part["send"]
    rows = [
        ("ConversationService.receive", part["receive"]),
        ("  Store.turn (load, handle, commit)", part["turn"]),
        ("  Store.load", part["load"]),
        ("  resident.handle", part["handle"]),
        ("  Store.commit (state, outbox)", part["commit"]),
        ("send (Bot API calls)", part["send"]),
        ("  Store.sent (outbox row deleted)", part["sent"]),
        ("PTB dispatch, answerCallbackQuery", rest),
        ("of all: fake Bot API itself", ours_fake_last / n),
    ]
    for label, seconds in rows:
        if seconds or not label.startswith("  "):  # a part this commit does not have
            print(f"  {label:<34}{us(seconds)}/update")
    print(f"  ({sum(calls_last.values()) / n:.2f} Bot API calls per update)")
    return ratio


def command_line(doc: str | None, chats: int, rounds: int = 5) -> argparse.ArgumentParser:
    """The update benchmarks' options: chats per round and measured rounds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--chats", type=int, default=chats, help=f"chats per round ({chats})")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"measured rounds ({rounds})")
    return parser


if __name__ == "__main__":
    args = command_line(__doc__, chats=500).parse_args()
    asyncio.run(main(args.chats, args.rounds))

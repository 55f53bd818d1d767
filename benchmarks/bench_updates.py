"""Cost per Telegram update of a whole conversation step, against a bare PTB handler.

Run by hand: ``.venv/bin/python benchmarks/bench_updates.py`` (goal: ours <= 1.5x bare).

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

Every round uses fresh update ids (ours ignores an update id it has already handled). The
figure is the median over the rounds of (round time / updates); a warm-up round comes first.
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
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from pydantic import SecretStr
from telegram import Bot, Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters
from telegram.request import BaseRequest, RequestData

from bot import telegram_app
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
GOAL = 1.5
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

    def round(self, bot_ours: Bot, bot_bare: Bot) -> tuple[list[Update], list[Update]]:
        """Every chat's whole conversation, steps interleaved; the same updates as text."""
        plan = [self.scripts[c % len(self.scripts)] for c in range(self.chats)]
        ours, bare = [], []
        for index in range(max(len(s) for s in plan)):
            for c, script in enumerate(plan):
                if index < len(script):
                    uid = next(self._update_ids)
                    chat = FIRST_CHAT + c
                    ours.append(
                        Update.de_json(update_dict(uid, chat, script[index], False), bot_ours)
                    )
                    bare.append(
                        Update.de_json(update_dict(uid, chat, script[index], True), bot_bare)
                    )
        return ours, bare


# -- the two applications --------------------------------------------------------------------


async def ours_app(directory: Path) -> tuple[App, FakeBotApi]:
    api = FakeBotApi()

    def offline_builder() -> Any:
        return ApplicationBuilder().request(api).get_updates_request(FakeBotApi())

    settings = Settings(
        bot_token=SecretStr(TOKEN),
        database_url=f"sqlite+aiosqlite:///{directory}/bench.db",
        # Every reply is paced now: lift the limits so this keeps measuring processing cost.
        broadcast_per_second=1_000_000,
        broadcast_per_chat_interval=0,
    )
    with mock.patch.object(telegram_app, "ApplicationBuilder", offline_builder):
        app = telegram_app.build_application(settings)
    await app.initialize()
    assert app.post_init is not None  # initialize() does not run it; run_polling would
    await app.post_init(app)
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


async def close(app: App) -> None:
    await app.shutdown()
    if app.post_shutdown is not None:
        await app.post_shutdown(app)


# -- measuring ---------------------------------------------------------------------------------


async def run_round(app: App, updates: list[Update]) -> float:
    """Seconds per update."""
    gc.collect()
    start = time.perf_counter()
    for update in updates:
        await app.process_update(update)
    return (time.perf_counter() - start) / len(updates)


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
    with (
        mock.patch.object(service, "receive", timer.wrap("receive", service.receive)),
        mock.patch.object(store, "load", timer.wrap("load", store.load)),
        mock.patch.object(store, "commit", timer.wrap("commit", store.commit)),
        mock.patch.object(store, "sent", timer.wrap("sent", store.sent)),
        mock.patch("bot.service.handle", timer.wrap_sync("handle", resident.handle)),
        mock.patch.object(telegram_app, "send", timer.wrap("send", telegram_app.send)),
    ):
        yield


async def check_conversations(service: ConversationService, chats: int) -> None:
    """Every chat must have reached a rendered quote, or the benchmark measured error paths."""
    for c in range(chats):
        state, _ = await service.store.load(FIRST_CHAT + c)
        assert state is not None and state.step == Step.QUOTED, (c, state)
        assert await service.store.pending(FIRST_CHAT + c) == []  # every reply was sent


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"


async def main(chats: int, rounds: int) -> float:
    errors = ErrorCount()
    logging.getLogger().addHandler(errors)
    traffic = Traffic(chats)
    with tempfile.TemporaryDirectory() as tmp:
        ours, ours_api = await ours_app(Path(tmp))
        bare, bare_api = await bare_app()
        service: ConversationService = ours.bot_data["service"]
        try:
            ours_updates, bare_updates = traffic.round(ours.bot, bare.bot)
            await run_round(ours, ours_updates)  # warm-up: creates the rows, fills caches
            await run_round(bare, bare_updates)
            await check_conversations(service, chats)
            n = len(ours_updates)
            ours_times, bare_times = [], []
            for r in range(rounds):
                ours_updates, bare_updates = traffic.round(ours.bot, bare.bot)
                if r % 2:  # alternate the order so drift hurts neither side
                    bare_times.append(await run_round(bare, bare_updates))
                    ours_times.append(await run_round(ours, ours_updates))
                else:
                    ours_times.append(await run_round(ours, ours_updates))
                    bare_times.append(await run_round(bare, bare_updates))
            await check_conversations(service, chats)

            ours_calls, bare_calls = Counter(ours_api.calls), Counter(bare_api.calls)
            ours_fake, bare_fake = ours_api.seconds, bare_api.seconds
            timer = Timer()
            ours_updates, _ = traffic.round(ours.bot, bare.bot)
            with instrumented(service, timer):
                breakdown_total = await run_round(ours, ours_updates)
            ours_fake_last = ours_api.seconds - ours_fake
            calls_last = ours_api.calls - ours_calls
        finally:
            await close(ours)
            await close(bare)
    assert errors.count == 0, f"{errors.count} errors were logged"

    bare_us, ours_us = statistics.median(bare_times), statistics.median(ours_times)
    ratio = ours_us / bare_us
    measured = n * rounds
    print(f"updates per round: {n} ({chats} chats, {n / chats:.1f} steps each), rounds: {rounds}")
    print(f"updates measured per application: {measured} (+ {n} warm-up)")
    print(f"bare PTB reply_text:  {us(bare_us)}/update (min {us(min(bare_times))})")
    print(f"ours, full step:      {us(ours_us)}/update (min {us(min(ours_times))})")
    verdict = "meets" if ratio <= GOAL else "MISSES"
    print(f"ratio ours/bare:      {ratio:8.2f}x   ({verdict} the goal <= {GOAL}x)")
    paired = sorted(o / b for o, b in zip(ours_times, bare_times, strict=True))
    print(f"  per-round ratios:   {', '.join(f'{r:.2f}' for r in paired)}")
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
    print(f"Breakdown of ours (one instrumented round, {us(breakdown_total)}/update):")
    part = {name: seconds / n for name, seconds in timer.seconds.items()}
    rest = breakdown_total - part["receive"] - part["send"]
    rows = [
        ("ConversationService.receive", part["receive"]),
        ("  Store.load", part["load"]),
        ("  resident.handle", part["handle"]),
        ("  Store.commit (state, outbox)", part["commit"]),
        ("send (Bot API calls)", part["send"]),
        ("  Store.sent (outbox row deleted)", part["sent"]),
        ("PTB dispatch, answerCallbackQuery", rest),
        ("of all: fake Bot API itself", ours_fake_last / n),
    ]
    for label, seconds in rows:
        print(f"  {label:<34}{us(seconds)}/update")
    print(f"  ({sum(calls_last.values()) / n:.2f} Bot API calls per update)")
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chats", type=int, default=500, help="chats per round (default 500)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    args = parser.parse_args()
    asyncio.run(main(args.chats, args.rounds))

"""CPU per update over real HTTP: our webhook against a bare python-telegram-bot webhook bot.

Run by hand: ``.venv/bin/python benchmarks/bench_webhook.py`` (goal: ours <= 1.3x bare).

Each bot runs in a process of its own and listens on 127.0.0.1; this process posts the
updates to it as Telegram does (a JSON body with the secret header, on one keep-alive
connection), one after the other, and waits for each answer.

- Ours is the real bot: ``bot.intake.serve`` (``_WebhookHandler``, 200 only once the update
  is committed and its replies sent) with ``bot.telegram_app.build_application``, its store
  on a SQLite file; the traffic is :mod:`bench_updates`' conversations (presses and typed
  text). Its background work (the delivery worker, the resend and purge loops) runs as in
  production and is counted.
- Bare is python-telegram-bot's own webhook (``Updater.start_webhook``, tornado like ours,
  200 as soon as the update is queued) with one handler, ``reply_text("ok")``, fed the
  same updates as text messages.

Both bots' Bot API calls are answered in their own process by
:class:`bench_updates.FakeBotApi` (PTB encodes each request as it would for HTTP), so the
figures are the bots' own work: HTTP in, parsing, handling, storing, encoding the replies.
The figure is each bot process's CPU time (``time.process_time``, all its threads) per
update, median over the rounds; the client's CPU is measured apart and shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench_updates import (
    TOKEN,
    FakeBotApi,
    Traffic,
    bench_settings,
    command_line,
    offline_application,
)
from telegram import Update
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

from bot import intake, metrics

GOAL = 1.3
PATH = "hook"
SECRET = "bench-secret"


# -- in the bot's process ---------------------------------------------------------------------


class Meter:
    """Answers the client over a pipe: CPU time, updates handled, and the CPU time spent in
    ``Application.process_update`` (the handling itself: what is left is HTTP, parsing and
    the loop) between start and stop."""

    def __init__(self, conn: Connection, handled: Any, app: Any) -> None:
        self.conn = conn
        self.handled = handled  # () -> updates handled so far
        self.quit = asyncio.Event()
        self.handling = 0.0
        process_update = app.process_update

        async def timed(update: object) -> None:
            start = time.thread_time()  # the loop's thread: what this update costs there
            try:
                await process_update(update)
            finally:
                self.handling += time.thread_time() - start

        app.process_update = timed

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.conn.fileno(), readable.set)
        self.conn.send("ready")
        cpu = count = handling = 0.0
        while True:
            await readable.wait()
            readable.clear()
            while self.conn.poll():
                command, expected = self.conn.recv()
                if command == "start":
                    cpu, count, handling = time.process_time(), self.handled(), self.handling
                    self.conn.send("started")
                elif command == "stop":
                    while self.handled() - count < expected:  # bare answers before handling
                        await asyncio.sleep(0.005)
                    self.conn.send(
                        (
                            time.process_time() - cpu,
                            self.handled() - count,
                            self.handling - handling,
                        )
                    )
                else:
                    self.quit.set()
                    return


async def serve_ours(port: int, directory: Path, conn: Connection) -> None:
    settings = bench_settings(
        directory,
        webhook_url=f"http://127.0.0.1:{port}/{PATH}",
        webhook_secret=SECRET,
        webhook_listen="127.0.0.1",
        webhook_port=port,
    )
    app, _ = offline_application(settings)
    bot = asyncio.create_task(intake.serve(app, settings))
    while "worker" not in app.bot_data:  # post_init has run; the webhook listens next
        await asyncio.sleep(0.05)
    await app.bot_data["faq_warmup"]

    def handled() -> float:
        value = metrics.REGISTRY.get_sample_value(
            "yibao_updates_handled_total", {"outcome": "committed"}
        )
        return value or 0.0

    meter = Meter(conn, handled, app)
    await meter.run()
    bot.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await bot


async def serve_bare(port: int, conn: Connection) -> None:
    handled = 0

    async def reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        nonlocal handled
        assert update.message is not None
        await update.message.reply_text("ok")
        handled += 1

    app = ApplicationBuilder().token(TOKEN).request(FakeBotApi()).build()
    app.add_handler(MessageHandler(filters.TEXT, reply))
    async with app:
        assert app.updater is not None
        await app.updater.start_webhook(
            listen="127.0.0.1",
            port=port,
            url_path=PATH,
            secret_token=SECRET,
            webhook_url=f"http://127.0.0.1:{port}/{PATH}",
        )
        await app.start()
        await Meter(conn, lambda: handled, app).run()
        await app.updater.stop()
        await app.stop()


def serve(kind: str, port: int, directory: str, conn: Connection) -> None:
    if kind == "ours":
        asyncio.run(serve_ours(port, Path(directory), conn))
    else:
        asyncio.run(serve_bare(port, conn))


# -- the client -------------------------------------------------------------------------------


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": SECRET,
        }
        for attempt in range(50):  # the server may still be starting
            try:
                self.http.request("POST", f"/{PATH}", body, headers)
                response = self.http.getresponse()
                response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.http.close()
                time.sleep(0.1 * (attempt + 1))
        else:
            raise SystemExit(f"the bot on port {self.port} does not answer")
        assert response.status == 200, response.status


class Bot:
    """A bot in its own process, and the client's connection to it."""

    def __init__(self, kind: str, port: int, directory: str) -> None:
        self.kind = kind
        self.pipe, child = multiprocessing.get_context("spawn").Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=serve, args=(kind, port, directory, child), daemon=True
        )
        self.process.start()
        assert self.pipe.recv() == "ready"
        self.client = Client(port)

    def round(self, bodies: list[bytes]) -> tuple[float, float, float, float]:
        """(bot CPU, client CPU, wall, bot CPU in process_update) per update."""
        self.pipe.send(("start", 0))
        assert self.pipe.recv() == "started"
        wall, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
            self.client.post(body)
        client_cpu = time.process_time() - cpu
        self.pipe.send(("stop", len(bodies)))
        bot_cpu, handled, handling = self.pipe.recv()
        wall = time.perf_counter() - wall
        assert handled == len(bodies), (self.kind, handled, len(bodies))
        n = len(bodies)
        return bot_cpu / n, client_cpu / n, wall / n, handling / n

    def close(self) -> None:
        self.pipe.send(("quit", 0))
        self.process.join(timeout=30)


def main(chats: int, rounds: int, port: int) -> float:
    traffic = Traffic(chats)
    with tempfile.TemporaryDirectory() as tmp:
        bots = {"ours": Bot("ours", port, tmp), "bare": Bot("bare", port + 1, tmp)}
        try:
            costs: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in bots}
            for r in range(rounds + 1):  # the first is the warm-up
                as_pressed, as_text = traffic.dicts()
                bodies = {
                    "ours": [json.dumps(u).encode() for u in as_pressed],
                    "bare": [json.dumps(u).encode() for u in as_text],
                }
                order = ["ours", "bare"] if r % 2 else ["bare", "ours"]
                for name in order:
                    cost = bots[name].round(bodies[name])
                    if r:
                        costs[name].append(cost)
            n = len(bodies["ours"])
        finally:
            for bot in bots.values():
                bot.close()

    def us(values: list[float]) -> str:
        return (
            f"{statistics.median(values) * 1e6:7,.0f} µs "
            f"({min(values) * 1e6:,.0f}–{max(values) * 1e6:,.0f})"
        )

    print(f"updates per round: {n} ({chats} chats), rounds: {rounds} (+ 1 warm-up)")
    print("per update, median (spread):   bot CPU                client CPU         wall")
    for name, label in (("bare", "bare PTB webhook"), ("ours", "ours (bot.intake)")):
        bot_cpu, client_cpu, wall, _ = (list(x) for x in zip(*costs[name], strict=True))
        print(f"  {label:<28}{us(bot_cpu)}  {us(client_cpu)}  {us(wall)}")
    print("  of the bot CPU, in Application.process_update (the rest: HTTP, parsing, the loop):")
    for name in ("bare", "ours"):
        handling = [c[3] for c in costs[name]]
        rest = [c[0] - c[3] for c in costs[name]]
        print(f"    {name:<6}{us(handling)}; the rest {us(rest)}")
    ratio = statistics.median(c[0] for c in costs["ours"]) / statistics.median(
        c[0] for c in costs["bare"]
    )
    paired = sorted(o[0] / b[0] for o, b in zip(costs["ours"], costs["bare"], strict=True))
    verdict = "meets" if ratio <= GOAL else "MISSES"
    print(f"ratio ours/bare, bot CPU: {ratio:.2f}x ({verdict} the goal <= {GOAL}x)")
    print(f"  per-round ratios: {', '.join(f'{p:.2f}' for p in paired)}")
    return ratio


if __name__ == "__main__":
    parser = command_line(__doc__, chats=100)
    parser.add_argument("--port", type=int, default=18_443, help="ours; bare uses the next")
    args = parser.parse_args()
    main(args.chats, args.rounds, args.port)

"""Load and faults for the service (issue 14): residents conversing through the webhook of
``python -m bot serve --workers N`` on PostgreSQL, a worker SIGKILLed mid-run, and a
broadcast to 2,000 subscribers going out from the same processes.

Run by hand: ``.venv/bin/python benchmarks/bench_service.py`` (defaults: 1,000 residents,
1, 2 and 3 processes, 2,000 subscribers, two announcements, 40 connections).

Everything is on 127.0.0.1: a throwaway PostgreSQL server (``tests/pg_server.py``), the
Bot API stand-in (``tests/botapi_stub.py``, in a process of its own so it does not share
this one's interpreter) and, for each N, a new database and a new ``serve``.

- Residents: every one starts at once and types a whole conversation (``/start``, the
  region, a birth date, a group, a payment date: five updates), each message sent once the
  webhook confirmed the one before. Updates are posted as Telegram does: over at most
  ``--connections`` keep-alive connections (Telegram's default ``max_connections`` is 40),
  and again after a refused connection, a cut connection or a 500 until a 200.
  Update-to-reply time is from the request leaving to its 200, which the bot gives once
  the update is committed and its replies are with the Bot API.
- Faults: when 40 % of the updates are confirmed, one worker is SIGKILLed; ``serve``
  starts it again.
- Broadcast: ``--broadcasts`` announcements to the region's ``--subscribers`` subscribers
  are queued (``python -m bot broadcast``) as the residents start; the run ends when
  every subscriber has every announcement.
- CPU per update: the CPU time of serve and its workers (``/proc``) while the residents
  converse, over the updates; the PostgreSQL server's CPU separately.

Asserted (the run fails otherwise): every conversation reached its quote; every update
applied exactly once (each chat's row version and its handled update ids); every update
answered; every subscriber got each announcement; in every one-second window at most
``BROADCAST_PER_SECOND`` announcement messages; no chat two announcements less than
``BROADCAST_PER_CHAT_INTERVAL`` apart. Replies and announcements sent twice after the kill
(the sends in flight) are counted and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench_broadcast import FIRST_SUBSCRIBER, max_in_window, seed  # noqa: E402
from botapi_stub import BotApiStub  # noqa: E402
from pg_server import admin, postgres_server  # noqa: E402
from test_e2e_bot import free_port  # noqa: E402
from test_e2e_broadcast import Db  # noqa: E402

from bot.storage import conversations  # noqa: E402
from conversations.state import State  # noqa: E402

REGION, REGION_NAME = "dalate", "达拉特旗"
# Inside 达拉特旗's concentrated period (its notice 二（二）: 2022-09-01 to 2023-02-28).
TODAY = "2023-01-10"
TEMPLATES = ("collection_opens", "deadline")
RATE, INTERVAL = 25, 1.0  # the bot's defaults, spelled out
STAFF = 900
SECRET = "bench-secret"
FIRST_RESIDENT = 10_000_000  # subscribers are bench_broadcast's, from 1,000,000
GROUPS = ("低保", "都不是", "特困人员", "监测户")
KILL_AT = 0.4
QUOTE = ("现在需缴", "无需缴费")


# ----------------------------------------------------------------------------- the Bot API


def _stub_main(conn: multiprocessing.connection.Connection) -> None:
    """The stand-in in a process of its own: its address out; on request, what it saw."""
    stub = BotApiStub().start()
    conn.send((stub.token, stub.base_url))
    while (request := conn.recv()) != "stop":
        with stub._lock:
            calls = [
                (method, {k: params.get(k) for k in ("chat_id", "text", "reply_markup")})
                for method, params in stub.calls
            ]
            conn.send((request, calls, list(stub.call_times), sorted(stub._failed)))
    stub.stop()


class Stub:
    def __init__(self) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("fork").Process(target=_stub_main, args=(child,))
        self.proc.start()
        self.token, self.base_url = self.conn.recv()

    def seen(self) -> tuple[list[tuple[str, dict[str, Any]]], list[float], set[int]]:
        self.conn.send("dump")
        _, calls, times, failed = self.conn.recv()
        return calls, times, set(failed)

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(10)


# ----------------------------------------------------------------------------- the webhook


class Webhook:
    """Keep-alive HTTP/1.1 connections to the bot's webhook, at most ``size`` at once."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = (
            asyncio.Queue()
        )
        for _ in range(size):
            self.free.put_nowait(None)

    async def post(self, body: bytes) -> tuple[int | None, float]:
        """The status (None: the connection failed) and the seconds it took."""
        conn = await self.free.get()
        start = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", self.port)
            reader, writer = conn
            writer.write(
                b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"X-Telegram-Bot-Api-Secret-Token: " + SECRET.encode() + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
            status = int((await reader.readuntil(b"\r\n")).split()[1])
            length = 0
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            if conn is not None:
                conn[1].close()
            self.free.put_nowait(None)
            return None, time.perf_counter() - start
        self.free.put_nowait(conn)
        return status, time.perf_counter() - start


def message_update(update_id: int, chat_id: int, text_: str) -> bytes:
    message: dict[str, Any] = {
        "message_id": update_id,
        "from": {"id": chat_id, "is_bot": False, "first_name": "R", "language_code": "zh-hans"},
        "chat": {"id": chat_id, "type": "private", "first_name": "R"},
        "date": int(time.time()),
        "text": text_,
    }
    if text_.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text_)}]
    return json.dumps({"update_id": update_id, "message": message}).encode()


def script(i: int) -> list[str]:
    """A resident's five messages: born 1940–1999, paying in January 2023."""
    return [
        "/start",
        REGION_NAME,
        f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d}",
        GROUPS[i % len(GROUPS)],
        f"2023-01-{11 + i % 18:02d}",
    ]


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    retries: int = 0
    confirmed: int = 0


async def converse(
    residents: int, hook: Webhook, total: int, kill: Any, load: Load, args_kill: bool = True
) -> None:
    ids = itertools.count(1)
    killed = False

    async def resident(i: int) -> None:
        nonlocal killed
        for text_ in script(i):
            body = message_update(next(ids), FIRST_RESIDENT + i, text_)
            while True:
                status, took = await hook.post(body)
                if status == 200:
                    break
                load.retries += 1
                await asyncio.sleep(0.1)
            load.latencies.append(took)
            load.confirmed += 1
            if not killed and args_kill and load.confirmed >= KILL_AT * total:
                killed = True
                kill()

    await asyncio.gather(*(resident(i) for i in range(residents)))


# ----------------------------------------------------------------------------- processes


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class CpuMeter:
    """CPU seconds of a set of processes, sampled, so a process that dies keeps what it
    used up to its last sample."""

    def __init__(self, pids: Any) -> None:
        self.pids = pids
        self.last: dict[int, float] = {}
        self.first: dict[int, float] = {}

    def sample(self) -> None:
        for pid in self.pids():
            used = cpu_seconds(pid)
            if used is not None:
                self.first.setdefault(pid, used)
                self.last[pid] = used

    def used(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def env(stub: Stub, url: str, port: int) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return {
        **keep,
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
        "BOT_TOKEN": stub.token,
        "TELEGRAM_BASE_URL": stub.base_url,
        "DATABASE_URL": url,
        "AUTO_MIGRATE": "true",
        "WEBHOOK_URL": f"http://127.0.0.1:{port}/hook",
        "WEBHOOK_LISTEN": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
        "WEBHOOK_SECRET": SECRET,
        "STAFF_IDS": str(STAFF),
        "TODAY": TODAY,
        "TIMEZONE": "Asia/Shanghai",
        "BROADCAST_PER_SECOND": str(RATE),
        "BROADCAST_PER_CHAT_INTERVAL": str(INTERVAL),
    }


async def applied(url: str, residents: int) -> dict[int, tuple[int, int]]:
    """chat id -> (row version, update ids handled), for the residents' chats."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(conversations.c.chat_id, conversations.c.version, conversations.c.state)
                .where(conversations.c.chat_id >= FIRST_RESIDENT)
                .where(conversations.c.chat_id < FIRST_RESIDENT + residents)
            )
            return {
                int(r.chat_id): (int(r.version), len(State.model_validate_json(r.state).seen))
                for r in rows
            }
    finally:
        await engine.dispose()


def queue(environment: dict[str, str], template: str) -> int:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bot", "broadcast", "--template", template),
            *("--region", REGION, "--staff-id", str(STAFF), "--key", f"bench-{template}"),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r"：(\d+) 位订阅者", done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"queueing {template} failed: {done.stdout}{done.stderr}")
    return int(found.group(1))


# ----------------------------------------------------------------------------- one run


def run(processes: int, args: argparse.Namespace, server: str) -> dict[str, Any]:
    name = f"bench_{processes}_{os.getpid()}"
    if args.sqlite:  # the embedded default, for comparison (one process)
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bot.db"
    else:
        asyncio.run(admin(server, f"CREATE DATABASE {name}"))
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
    db = Db(url)  # migrates
    seed(db, args.subscribers)
    db.close()
    stub = Stub()
    port = free_port()
    environment = env(stub, url, port)
    log = Path(tempfile.gettempdir()) / f"bench-service-{processes}.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--workers", str(processes)],
        env=environment,
        cwd=tempfile.gettempdir(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    bot_cpu = CpuMeter(lambda: [serve.pid, *children(serve.pid)])
    pg_cpu = CpuMeter(postgres_pids)
    try:
        deadline = time.monotonic() + 120
        while len(children(serve.pid)) < processes or not _listening(port):
            if serve.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("serve did not start:\n" + log.read_text())
            time.sleep(0.2)
        time.sleep(1.0)  # every worker past setWebhook
        for template in TEMPLATES[: args.broadcasts]:
            queue(environment, template)
        total = args.residents * len(script(0))
        load = Load()
        killed: list[int] = []

        def kill() -> None:
            victim = children(serve.pid)[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        async def drive() -> float:
            hook = Webhook(port, args.connections)
            sampler = asyncio.create_task(_sample_forever(bot_cpu, pg_cpu))
            start = time.perf_counter()
            await converse(args.residents, hook, total, kill, load, not args.no_kill)
            took = time.perf_counter() - start
            sampler.cancel()
            return took

        bot_cpu.sample()
        pg_cpu.sample()
        took = asyncio.run(drive())
        bot_cpu.sample()
        pg_cpu.sample()
        residents_cpu, postgres_cpu = bot_cpu.used(), pg_cpu.used()
        expected = args.subscribers * args.broadcasts
        deadline = time.monotonic() + expected / RATE * 2 + 120
        while True:
            calls, times, failed = stub.seen()
            got = Counter(
                int(p["chat_id"])
                for i, (m, p) in enumerate(calls)
                if m == "sendMessage"
                and i not in failed
                and p.get("chat_id") is not None
                and subscriber(int(p["chat_id"]), args.subscribers)
            )
            everyone = len(got) == args.subscribers and min(got.values()) >= args.broadcasts
            if not args.broadcasts or everyone or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        rows = asyncio.run(applied(url, args.residents))
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
        stub.stop()
        if not args.sqlite:
            asyncio.run(admin(server, f"DROP DATABASE {name} WITH (FORCE)"))
    return _verdict(
        processes,
        args,
        load,
        took,
        residents_cpu,
        postgres_cpu,
        rows,
        calls,
        times,
        failed,
        killed,
        log,
    )


async def _sample_forever(*meters: CpuMeter) -> None:
    while True:
        for meter in meters:
            meter.sample()
        await asyncio.sleep(0.5)


def subscriber(chat: int, subscribers: int) -> bool:
    return FIRST_SUBSCRIBER <= chat < FIRST_SUBSCRIBER + subscribers


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _verdict(
    processes: int,
    args: argparse.Namespace,
    load: Load,
    took: float,
    residents_cpu: float,
    postgres_cpu: float,
    rows: dict[int, tuple[int, int]],
    calls: list[tuple[str, dict[str, Any]]],
    times: list[float],
    failed: set[int],
    killed: list[int],
    log: Path,
) -> dict[str, Any]:
    steps = len(script(0))
    total = args.residents * steps
    replies: dict[int, list[str]] = defaultdict(list)
    announcements: dict[int, list[float]] = defaultdict(list)
    for index, ((method, params), t) in enumerate(zip(calls, times, strict=False)):
        if index in failed or method not in ("sendMessage", "editMessageText", "sendPhoto"):
            continue
        chat = params.get("chat_id")
        if chat is None:
            continue
        chat = int(chat)
        if FIRST_RESIDENT <= chat < FIRST_RESIDENT + args.residents:
            replies[chat].append(str(params.get("text")))
        elif subscriber(chat, args.subscribers) and method == "sendMessage":
            announcements[chat].append(t)
    problems = []
    lost = [
        c
        for c in range(FIRST_RESIDENT, FIRST_RESIDENT + args.residents)
        if not replies[c] or not any(q in replies[c][-1] for q in QUOTE)
    ]
    if lost:
        problems.append(f"{len(lost)} conversations did not reach their quote")
    twice = [c for c, (version, seen) in rows.items() if version != steps or seen != steps]
    if len(rows) != args.residents or twice:
        problems.append(f"updates not applied exactly once in {len(twice)} chats")
    unanswered = [
        c for c in range(FIRST_RESIDENT, FIRST_RESIDENT + args.residents) if len(replies[c]) < steps
    ]
    if unanswered:
        problems.append(f"{len(unanswered)} chats got fewer replies than updates")
    doubled_replies = sum(
        sum(1 for a, b in itertools.pairwise(texts) if a == b) for texts in replies.values()
    )
    skipped = [
        c
        for c in range(FIRST_SUBSCRIBER, FIRST_SUBSCRIBER + args.subscribers)
        if len(announcements[c]) < args.broadcasts
    ]
    if skipped:
        problems.append(f"{len(skipped)} subscribers missed an announcement")
    doubled_announcements = sum(max(0, len(v) - args.broadcasts) for v in announcements.values())
    all_times = sorted(t for v in announcements.values() for t in v)
    window_max = max_in_window(all_times)
    if window_max > RATE:
        problems.append(f"{window_max} announcement messages in one second (limit {RATE})")
    gaps = [b - a for v in announcements.values() for a, b in itertools.pairwise(sorted(v))]
    closest = min(gaps) if gaps else None
    if closest is not None and closest < INTERVAL:
        problems.append(f"a chat got two announcements {closest:.3f} s apart")
    span = (all_times[-1] - all_times[0]) if len(all_times) > 1 else 0.0
    lat = sorted(load.latencies)
    resident_calls = sum(
        1
        for method, params in calls
        if method not in ("setWebhook", "setMyCommands", "deleteWebhook", "getMe")
        and params.get("chat_id") is not None
        and FIRST_RESIDENT <= int(params["chat_id"]) < FIRST_RESIDENT + args.residents
    )
    return {
        "calls_per_update": resident_calls / total,
        "processes": processes,
        "updates": total,
        "seconds": took,
        "throughput": total / took,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))],
        "bot_cpu_ms_per_update": 1000 * residents_cpu / total,
        "pg_cpu_ms_per_update": 1000 * postgres_cpu / total,
        "redelivered": load.retries,
        "killed": len(killed),
        "replies_twice": doubled_replies,
        "announcements": len(all_times),
        "announcements_twice": doubled_announcements,
        "announcement_rate": (len(all_times) - 1) / span if span else 0.0,
        "max_in_one_second": window_max,
        "closest_per_chat_s": closest,
        "problems": problems,
        "log": log,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=1000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--broadcasts", type=int, default=2, choices=[0, 1, 2])
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--no-kill", action="store_true", help="no worker killed (profiling)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead (one process)")
    args = parser.parse_args()
    print(
        f"{args.residents} residents × {len(script(0))} updates through the webhook, "
        f"{args.connections} connections; {args.broadcasts} announcements to "
        f"{args.subscribers} subscribers; one worker SIGKILLed at {KILL_AT:.0%}; "
        f"{os.cpu_count()} CPUs"
    )
    print("(Bot API calls per resident update are printed after each row)")
    header = (
        "procs  upd/s   p50 ms   p99 ms  bot CPU ms/upd  PG CPU ms/upd  redelivered  "
        "replies×2  ann.  ann.×2  ann./s  max/1s  closest"
    )
    print(header)
    failures = []
    with postgres_server() as server:
        for processes in args.processes:
            r = run(processes, args, server)
            closest = "-" if r["closest_per_chat_s"] is None else f"{r['closest_per_chat_s']:.2f}s"
            print(
                f"{r['processes']:>5}  {r['throughput']:5.0f}  {r['p50_ms']:7.1f}  "
                f"{r['p99_ms']:7.1f}  {r['bot_cpu_ms_per_update']:14.2f}  "
                f"{r['pg_cpu_ms_per_update']:13.2f}  {r['redelivered']:11d}  "
                f"{r['replies_twice']:9d}  {r['announcements']:4d}  "
                f"{r['announcements_twice']:6d}  {r['announcement_rate']:6.1f}  "
                f"{r['max_in_one_second']:6d}  {closest:>7}",
                flush=True,
            )
            print(f"       Bot API calls per update: {r['calls_per_update']:.2f}")
            for problem in r["problems"]:
                failures.append(f"{processes} processes: {problem} (log {r['log']})")
    for failure in failures:
        print("FAIL:", failure)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

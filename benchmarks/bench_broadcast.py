"""A broadcast's sustained rate, and what it does to the residents' reply times.

Run by hand: ``.venv/bin/python benchmarks/bench_broadcast.py [--subscribers N] [--rate R]
[--postgres] [--processes P]`` (defaults: 1,000 subscribers at 25 messages/s, the bot's
default BROADCAST_PER_SECOND, one process on SQLite). With ``--postgres`` the database is a
throwaway PostgreSQL server (``tests/pg_server.py``) and P processes send together.

The real ``python -m bot`` process runs against the local Bot API stand-in
(``tests/botapi_stub.py``), on a SQLite file in a temporary directory, through the end-to-end
tests' harness. Subscribers are written to its database, the broadcast is queued with
``python -m bot broadcast`` and, while it is sent, a different resident sends ``/help`` every
0.5 s. A resident's delay runs from ``send_text`` (the update is offered to the bot's long
poll) to the bot's reply reaching the stand-in. The same traffic runs once before, with no
broadcast, as the baseline.

Goals: the broadcast sustains >= 95 % of the configured rate over its steady middle (its
first and last second left out), no second holds more than the limit, and a broadcast adds
< 1 s to the interactive replies (p95 and worst).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from botapi_stub import BotApiStub
from pg_server import postgres_server
from sqlalchemy.engine import Connection
from test_e2e_bot import Harness
from test_e2e_broadcast import REGION, Db, bot_settings, china_now, queue_with_cli, send_calls

FIRST_SUBSCRIBER = 1_000_000
FIRST_RESIDENT = 9_000_000
INTERVAL = 0.5  # seconds between two residents' /help
BASELINE = 20  # residents in the baseline run
RATE_GOAL = 0.95
ADDED_GOAL = 1.0  # seconds


def seed(db: Db, count: int) -> None:
    now = dt.datetime.now(dt.UTC)
    languages = ("zh_Hans", "zh_Hant", "en")
    db.seed(
        [
            {
                "chat_id": FIRST_SUBSCRIBER + i,
                "region": REGION,
                "language": languages[i % len(languages)],
                "active": True,
                "subscribed_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
    )


class Residents:
    """Sends one ``/help`` per fresh chat every INTERVAL seconds and times the replies."""

    def __init__(self, stub: BotApiStub) -> None:
        self.stub = stub
        self.next_chat = FIRST_RESIDENT

    def run(self, until: Callable[[int], bool]) -> list[tuple[int, float, int]]:
        """Until ``until(sent so far in this run)``; returns (chat, time sent, call index)."""
        batch: list[tuple[int, float, int]] = []
        while not until(len(batch)):
            chat, self.next_chat = self.next_chat, self.next_chat + 1
            after = self.stub.call_count()
            sent_at = time.monotonic()
            self.stub.send_text(chat, "/help")
            batch.append((chat, sent_at, after))
            time.sleep(INTERVAL)
        return batch

    def delays(self, batch: list[tuple[int, float, int]]) -> list[float]:
        """Seconds from each /help to its reply at the stand-in (waits for late replies)."""
        out = []
        for chat, sent_at, after in batch:
            reply = self.stub.wait_for_message(chat, after_index=after, timeout=30)
            out.append(self.stub.call_times[int(reply["index"])] - sent_at)
        return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """The most sends in any window [t, t + width)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def transactions(db: Db) -> int:
    """Transactions the PostgreSQL database has finished so far (its statistics)."""

    def work(conn: Connection) -> int:
        found = conn.exec_driver_sql(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        return int(found.scalar_one())

    time.sleep(1.5)  # the server publishes a backend's counts at most once a second
    return db.run(db.store._run(work, commit=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=25, help="BROADCAST_PER_SECOND")
    parser.add_argument(
        "--postgres", action="store_true", help="a throwaway PostgreSQL server, not SQLite"
    )
    parser.add_argument("--processes", type=int, default=1, help="bot processes sending")
    args = parser.parse_args()
    settings = bot_settings(BROADCAST_PER_SECOND=str(args.rate))

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        stub = stack.enter_context(BotApiStub())
        harness = Harness(stub, Path(tmp))
        url = f"sqlite+aiosqlite:///{harness.db}"
        if args.postgres:
            url = stack.enter_context(postgres_server())
            settings["DATABASE_URL"] = url
        db = Db(url)
        try:
            seed(db, args.subscribers)
            bots = [harness.launch(**settings) for _ in range(args.processes)]
            bot = bots[0]
            residents = Residents(stub)
            residents.delays(residents.run(lambda n: n >= 3))  # warm-up: templates, pools
            baseline = residents.delays(residents.run(lambda n: n >= BASELINE))

            day = china_now().date()
            before = transactions(db) if args.postgres else 0
            broadcast_id = queue_with_cli(harness, day, settings)
            subscribers = range(FIRST_SUBSCRIBER, FIRST_SUBSCRIBER + args.subscribers)

            def broadcast_sends() -> list[float]:
                return [t for _, t, chat, _ in send_calls(stub) if chat in subscribers]

            while not broadcast_sends():  # the bot finds it at its next poll (2 s)
                assert bot.alive(), harness.logs()
                time.sleep(0.05)

            def done(_: int) -> bool:
                assert all(b.alive() for b in bots), harness.logs()
                return db.progress(broadcast_id).status == "done"

            during_batch = residents.run(done)
            sends = broadcast_sends()
            first, last = min(sends), max(sends)
            during_batch = [s for s in during_batch if s[1] < last]  # sent while it ran
            during = residents.delays(during_batch)
            progress = db.progress(broadcast_id)
            all_sends = [t for _, t, _, _ in send_calls(stub)]
            per_second = stub.sends_per_second()
            spent = transactions(db) - before if args.postgres else 0
        finally:
            harness.stop_all()
            db.close()

    lo, hi = first + 1.0, last - 1.0
    steady = hi - lo
    broadcast_rate = sum(lo <= t < hi for t in sends) / steady
    total_rate = sum(lo <= t < hi for t in all_sends) / steady
    limit = args.rate

    def row(label: str, measured: str, goal: str = "", good: bool | None = None) -> None:
        verdict = "" if good is None else ("ok" if good else "MISSED")
        print(f"{label:40}{measured:>18}{goal:>12}  {verdict}".rstrip())

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms"

    engine = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"broadcast #{broadcast_id}: {progress.sent} of {args.subscribers} subscribers sent in "
        f"{last - first:.1f} s by {args.processes} process(es) on {engine}; limit {limit}/s "
        f"and 1 s per chat; {len(during)} residents' /help during it, {len(baseline)} in the "
        "baseline"
    )
    if args.postgres:
        print(
            f"database transactions per broadcast message: {spent / progress.sent:.2f} "
            "(every transaction of the run: the residents' and the benchmark's own included)"
        )
    print()
    row("", "measured", "goal")
    row("sustained rate, broadcast sends", f"{broadcast_rate:.2f}/s {broadcast_rate / limit:.1%}")
    row(
        "  with the replies (one shared limit)",
        f"{total_rate:.2f}/s {total_rate / limit:.1%}",
        f">= {RATE_GOAL:.0%}",
        total_rate / limit >= RATE_GOAL,
    )
    busiest = max(per_second.values())
    row("max sends in a whole second", str(busiest), f"<= {limit}", busiest <= limit)
    window = max_in_window(all_sends)
    row("max sends in any 1 s window", str(window), f"<= {limit}", window <= limit)
    alone = max_in_window(sends)
    row("  the broadcast's alone", str(alone), f"<= {limit}", alone <= limit)
    print()
    print(f"{'reply delay to /help':40}{'baseline':>10}{'broadcast':>12}{'added':>10}")
    for name, base, busy in (
        ("median", statistics.median(baseline), statistics.median(during)),
        ("p95", p95(baseline), p95(during)),
        ("worst", max(baseline), max(during)),
    ):
        added = busy - base
        verdict = "" if name == "median" else ("  ok" if added < ADDED_GOAL else "  MISSED")
        print(f"{'  ' + name:40}{ms(base):>10}{ms(busy):>12}{ms(added):>10}{verdict}")
    print(f"(goal: a broadcast adds < {ADDED_GOAL:.0f} s to the p95 and worst delay)")


if __name__ == "__main__":
    main()

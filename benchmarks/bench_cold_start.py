"""Cold start to first reply, and what the understanding libraries cost at start-up.

    .venv/bin/python benchmarks/bench_cold_start.py

Starts ``python -m bot --console`` (a fresh process, as a resident's first message after a
restart meets it) and types one message; measures the wall time until the reply (the
birth question, a quote, an FAQ answer) is printed: on a restart (a database the bot made
before, at the newest migration: the usual case) and on a first start (an empty database,
migrated first). Then the import time and memory of OpenCC and RapidFuzz (used) and of
cn2an and pypinyin (measured, not used: see README). Goal: first reply ≤ 2 s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUOTE = "商洛 低保户 1956年3月5日出生 2023年11月20日交"  # every answer: the quote comes back
REGION = "商洛"  # a first answer any version of the bot understands
QUESTION = "商洛医保在哪里交"  # a first message the FAQ answers (jieba and the stored index)


def first_reply_seconds(
    message: str, until: str, root: Path = ROOT, database: Path | None = None
) -> float:
    """With ``database``, the bot starts on a copy of it; else on an empty one."""
    env = {k: v for k, v in os.environ.items() if k != "BOT_TOKEN"}
    env["PYTHONUNBUFFERED"] = "1"  # each reply as soon as it is printed
    with tempfile.TemporaryDirectory() as tmp:
        if database is not None:
            shutil.copy(database, f"{tmp}/bot.db")
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp}/bot.db"
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "--console"],
            cwd=root,  # python -m bot imports the checkout it runs in
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # start-up logs (migrations) are not the reply
            text=True,
        )
        assert proc.stdin and proc.stdout
        proc.stdin.write(message + "\n")
        proc.stdin.flush()
        for line in proc.stdout:
            if until in line:
                elapsed = time.perf_counter() - started
                break
        else:
            raise SystemExit("no quote printed")
        proc.stdin.close()
        proc.wait(timeout=10)
        return elapsed


def import_cost(module: str) -> tuple[float, float]:
    code = (
        "import resource, time; t = time.perf_counter(); import " + module + "; "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    base = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource; print(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return float("nan"), float("nan")
    seconds, rss = out.stdout.split()
    return float(seconds) * 1000, (int(rss) - int(base[1])) / 1024


def migrated_database(directory: Path, root: Path = ROOT) -> Path:
    """A database the bot (of ``root``) migrated, as a restart finds it."""
    path = directory / "migrated.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{path}"}
    subprocess.run(
        [sys.executable, "-m", "bot", "migrate"], cwd=root, env=env, check=True, capture_output=True
    )
    return path


def main() -> None:
    """``bench_cold_start.py [OTHER_CHECKOUT]``: with another checkout (e.g. a worktree of
    the commit before), its first replies are measured in the same rounds as ours."""
    other = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    roots = {"": ROOT, **({", other checkout": other} if other else {})}
    cases = {
        f"{kind}{name}": (message, until, root, at_head)
        for name, root in roots.items()
        for kind, message, until, at_head in (
            ("restart, first reply (商洛 → birth question)", REGION, "出生日期", True),
            ("restart, first quote (everything in one message)", QUOTE, "现在需缴", True),
            ("restart, first FAQ answer (a question)", QUESTION, "依据", True),
            ("first start (empty database), first reply", REGION, "出生日期", False),
        )
    }
    runs: dict[str, list[float]] = {label: [] for label in cases}
    with tempfile.TemporaryDirectory() as tmp:
        databases = {}
        for i, root in enumerate(roots.values()):
            (Path(tmp) / str(i)).mkdir()
            databases[root] = migrated_database(Path(tmp) / str(i), root)
        for _ in range(5):  # round by round, so a busy moment of the host hurts every case
            for label, (message, until, root, at_head) in cases.items():
                database = databases[root] if at_head else None
                runs[label].append(first_reply_seconds(message, until, root, database))
    for label, seconds in runs.items():
        print(
            f"{label}: median {statistics.median(seconds):.2f} s, "
            f"{min(seconds):.2f}–{max(seconds):.2f} s over {len(seconds)} runs (goal ≤ 2 s)"
        )
    for module in ("opencc", "rapidfuzz", "cn2an", "pypinyin"):
        ms, mib = import_cost(module)
        print(f"  import {module:10} {ms:7.1f} ms  +{mib:5.1f} MiB")


if __name__ == "__main__":
    main()

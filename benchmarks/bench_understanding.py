"""Accuracy and parse time of the understanding step on tests/understanding_eval.yaml.

    .venv/bin/python benchmarks/bench_understanding.py

Prints the share of messages fully right, per language and per answer kind, and the
p50/p95 parse time per message (goal: ≥ 95 % right, p95 ≤ 5 ms).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from understanding_evaluation import evaluate


def main() -> None:
    started = time.perf_counter()
    evaluate()  # warm: OpenCC, the vocabulary and the region names load once
    warm_ms = (time.perf_counter() - started) * 1000
    score = evaluate()
    times = sorted(score.times_ms)
    print(f"messages: {score.total}, fully right: {score.right} ({score.rate:.1%})")
    for lang, (right, total) in sorted(score.per_lang.items()):
        print(f"  {lang:8} {right}/{total} ({right / total:.1%})")
    print("per kind (messages where it is labelled or read):")
    for key, (right, total) in sorted(score.per_key.items()):
        print(f"  {key:15} {right}/{total} ({right / total:.1%})")
    p50 = times[len(times) // 2]
    print(
        f"parse time: p50 {p50:.2f} ms, p95 {score.p95_ms():.2f} ms (first pass {warm_ms:.0f} ms)"
    )
    for miss in score.misses:
        print("  miss:", miss)


if __name__ == "__main__":
    main()

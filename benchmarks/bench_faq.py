"""FAQ accuracy and latency on tests/faq_eval.yaml (goals: top-1 >= 90 %, cannot-answer
recognised >= 90 %, p95 <= 20 ms). Run by hand: ``.venv/bin/python benchmarks/bench_faq.py``;
``--misses`` lists what went wrong.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faq_evaluation import evaluate

from policies.faq import FaqIndex
from policies.loader import default_library


def main() -> None:
    start = time.perf_counter()
    index = FaqIndex(default_library())
    built = time.perf_counter() - start
    evaluate(index)  # warm-up: jieba's lazy structures, caches
    score = evaluate(index)
    print(f"index built in {built:.2f} s ({len(index.docs)} documents)")
    print(f"answerable questions: {score.answerable}, unanswerable: {score.unanswerable}")
    print(f"top-1: {score.top1_rate:.1%}  top-3: {score.top3_rate:.1%}")
    print(f"cannot-answer recognised: {score.recognised_rate:.1%}")
    print(f"latency p95: {score.p95_ms:.2f} ms (max {max(score.latencies_ms):.2f} ms)")
    if "--misses" in sys.argv:
        print("\n".join(score.misses))


if __name__ == "__main__":
    main()

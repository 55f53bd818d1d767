"""FAQ accuracy and latency on both labelled sets, per topic and language (goals on
tests/faq_eval_v2.yaml: top-1 >= 95 %, cannot-answer recognised >= 95 %, English and
Traditional >= 90 %; p95 <= 20 ms). Run by hand: ``.venv/bin/python benchmarks/bench_faq.py``;
``--misses`` lists what went wrong.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faq_evaluation import EVAL_FILE, EVAL_FILE_V2, Score, evaluate, load_questions

from policies.faq import FaqIndex
from policies.loader import default_library


def report(name: str, score: Score) -> None:
    print(f"== {name}: {score.answerable} answerable, {score.unanswerable} unanswerable")
    print(f"top-1: {score.top1_rate:.1%}  top-3: {score.top3_rate:.1%}")
    print(f"cannot-answer recognised: {score.recognised_rate:.1%}")
    if score.pay.total:
        print(f"amount to pay stated: {score.pay.right}/{score.pay.total}")
    if {"en", "zh_Hant"} & set(score.by_lang):
        print(f"English and Traditional: {score.lang_rate('en', 'zh_Hant'):.1%}")
    print(f"latency p95: {score.p95_ms:.2f} ms (max {max(score.latencies_ms):.2f} ms)")
    for label, tallies in (("language", score.by_lang), ("topic", score.by_topic)):
        cells = [f"{k} {t.right}/{t.total} ({t.rate:.0%})" for k, t in sorted(tallies.items())]
        print(f"by {label}: " + ", ".join(cells))
    if "--misses" in sys.argv:
        print("\n".join(score.misses))


def main() -> None:
    start = time.perf_counter()
    index = FaqIndex(default_library())
    built = time.perf_counter() - start
    print(f"index ready in {built:.2f} s ({len(index.docs)} documents)")
    for path in (EVAL_FILE, EVAL_FILE_V2):
        questions = load_questions(path)
        evaluate(index, questions)  # warm-up: jieba's lazy structures, caches
        report(path.name, evaluate(index, questions))


if __name__ == "__main__":
    main()

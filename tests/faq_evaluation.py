"""Scores the FAQ mode on the labelled questions in tests/faq_eval.yaml."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policies.faq import ANSWERS, Answer, FaqIndex

EVAL_FILE = Path(__file__).with_name("faq_eval.yaml")
CANNOT = ("none", "out_of_scope")


def load_questions() -> list[dict[str, Any]]:
    return list(yaml.safe_load(EVAL_FILE.read_text(encoding="utf-8")))


def _hit(answer: Answer, expect: dict[str, str]) -> bool:
    if answer.kind not in ANSWERS or answer.source != expect["file"]:
        return False
    got, want = answer.clause or "", str(expect["clause"])
    return got.startswith(want) or want.startswith(got)


@dataclass
class Score:
    answerable: int = 0
    top1: int = 0
    top3: int = 0
    unanswerable: int = 0
    recognised: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    @property
    def top1_rate(self) -> float:
        return self.top1 / max(self.answerable, 1)

    @property
    def top3_rate(self) -> float:
        return self.top3 / max(self.answerable, 1)

    @property
    def recognised_rate(self) -> float:
        return self.recognised / max(self.unanswerable, 1)

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0.0


def evaluate(index: FaqIndex, questions: list[dict[str, Any]] | None = None) -> Score:
    score = Score()
    for item in questions or load_questions():
        start = time.perf_counter()
        answers = index.search(item["q"], item.get("region"), limit=3)
        score.latencies_ms.append((time.perf_counter() - start) * 1000)
        expect = item["expect"]
        first = answers[0]
        if expect in CANNOT:
            score.unanswerable += 1
            if first.kind in CANNOT:
                score.recognised += 1
            else:
                score.misses.append(
                    f"[should not answer] {item['q']} -> {first.kind} {first.clause}"
                )
            continue
        score.answerable += 1
        if _hit(first, expect):
            score.top1 += 1
        else:
            score.misses.append(
                f"[{expect['clause']}] {item['q']} -> {first.kind} {first.clause} {first.score:.2f}"
            )
        if any(_hit(a, expect) for a in answers[:3]):
            score.top3 += 1
    return score

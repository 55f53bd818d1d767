"""Scores the FAQ mode on a labelled question set (tests/faq_eval.yaml, tests/faq_eval_v2.yaml).

An item: ``q``, ``expect`` ({file, clause} | none | out_of_scope), optional ``region`` (the
user's last conversation), and in the second set ``lang``, ``topic`` and ``pay`` (yuan the
person pays now: the answer must state that amount).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policies.faq import ANSWERS, Answer, FaqIndex

EVAL_FILE = Path(__file__).with_name("faq_eval.yaml")
EVAL_FILE_V2 = Path(__file__).with_name("faq_eval_v2.yaml")
CANNOT = ("none", "out_of_scope")


def load_questions(path: Path = EVAL_FILE) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text(encoding="utf-8")))


def _hit(answer: Answer, expect: dict[str, str]) -> bool:
    if answer.kind not in ANSWERS or answer.source != expect["file"]:
        return False
    got, want = answer.clause or "", str(expect["clause"])
    return got.startswith(want) or want.startswith(got)


def _states(answer: Answer, amount: int) -> bool:
    return re.search(rf"(?<!\d){amount}(?!\d)", answer.answer) is not None


@dataclass
class Tally:
    right: int = 0
    total: int = 0

    @property
    def rate(self) -> float:
        return self.right / max(self.total, 1)

    def add(self, right: bool) -> None:
        self.total += 1
        self.right += right


@dataclass
class Score:
    answerable: int = 0
    top1: int = 0
    top3: int = 0
    unanswerable: int = 0
    recognised: int = 0
    pay: Tally = field(default_factory=Tally)
    by_topic: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_lang: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
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

    def lang_rate(self, *langs: str) -> float:
        """Items right (top-1 with the amount, or recognised as unanswerable) in ``langs``."""
        right = sum(self.by_lang[lang].right for lang in langs if lang in self.by_lang)
        total = sum(self.by_lang[lang].total for lang in langs if lang in self.by_lang)
        return right / max(total, 1)

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
            right = first.kind in CANNOT
            score.recognised += right
            if not right:
                score.misses.append(
                    f"[should not answer] {item['q']} -> {first.kind} {first.clause}"
                )
        else:
            score.answerable += 1
            right = _hit(first, expect)
            if right and "pay" in item:
                right = _states(first, int(item["pay"]))
                score.pay.add(right)
            score.top1 += right
            if not right:
                pay = f" (pay {item['pay']})" if "pay" in item else ""
                score.misses.append(
                    f"[{expect['clause']}]{pay} {item['q']} -> {first.kind} {first.clause} "
                    f"{first.score:.2f} {first.answer[:60]}"
                )
            if any(_hit(a, expect) for a in answers[:3]):
                score.top3 += 1
        score.by_topic[item.get("topic", "-")].add(right)
        score.by_lang[item.get("lang", "zh_Hans")].add(right)
    return score

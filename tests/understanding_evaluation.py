"""Scores conversations.understanding on the labelled messages in understanding_eval.yaml.

The set was written and labelled from the notices and the issue text alone, by someone who
had not seen the parser. A message is fully right when every answer it holds is read and
nothing else is: each key below is compared, absent ones with their empty value.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conversations.dates import Mention
from conversations.state import Step
from conversations.understanding import Understanding, understand
from policies.loader import default_library

EVAL_FILE = Path(__file__).with_name("understanding_eval.yaml")
KEYS = (
    "region",
    "birth",
    "payment",
    "categories",
    "category_words",
    "none_of_these",
    "tier",
    "newborn",
    "student",
    "nav",
    "question",
    "id_number",
)


def load() -> tuple[dt.datetime, list[dict[str, Any]]]:
    data = yaml.safe_load(EVAL_FILE.read_text(encoding="utf-8"))
    clock = data["clock"]
    if isinstance(clock, str):
        clock = dt.datetime.fromisoformat(clock)
    return clock, list(data["messages"])


def _birth(m: Mention | None) -> str | None:
    if m is None or m.year_missing:
        return None
    if m.precision == "year" or (m.first.month, m.first.day, m.last.month, m.last.day) == (
        1,
        1,
        12,
        31,
    ):
        return f"{m.first.year}"
    if m.exact:
        return m.first.isoformat()
    if m.first.day == 1 and m.first.month == m.last.month and m.first.year == m.last.year:
        return f"{m.first.year}-{m.first.month:02d}"
    return f"{m.first}..{m.last}"


def _payment(m: Mention | None) -> str | None:
    if m is None:
        return None
    return m.last.isoformat()  # a span ("下个月", "11月"): quoted at its latest day


def got(u: Understanding) -> dict[str, Any]:
    return {
        "region": sorted(u.regions) or None,
        "birth": _birth(u.birth),
        "payment": _payment(u.payment),
        "categories": sorted(u.categories) or None,
        "category_words": bool(u.category_words),
        "none_of_these": u.none_of_these,
        "tier": u.tier,
        "newborn": u.newborn,
        "student": u.student,
        "nav": u.nav,
        "question": u.question,
        "id_number": u.id_number,
    }


def want(expect: dict[str, Any] | None) -> dict[str, Any]:
    expect = expect or {}
    region = expect.get("region")
    return {
        "region": sorted(region if isinstance(region, list) else [region]) if region else None,
        "birth": str(expect["birth"]) if "birth" in expect else None,
        "payment": str(expect["payment"]) if "payment" in expect else None,
        "categories": sorted(expect["categories"]) if expect.get("categories") else None,
        "category_words": bool(expect.get("category_words")),
        "none_of_these": bool(expect.get("none_of_these")),
        "tier": expect.get("tier"),
        "newborn": bool(expect.get("newborn")),
        "student": bool(expect.get("student")),
        "nav": expect.get("nav"),
        "question": bool(expect.get("question")),
        "id_number": bool(expect.get("id_number")),
    }


@dataclass
class Score:
    total: int = 0
    right: int = 0
    per_key: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    per_lang: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    times_ms: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.right / self.total if self.total else 0.0

    def p95_ms(self) -> float:
        ordered = sorted(self.times_ms)
        return ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0.0


def evaluate() -> Score:
    clock, messages = load()
    library = default_library()
    score = Score()
    for item in messages:
        now = dt.datetime.fromisoformat(str(item["now"])) if "now" in item else clock
        started = time.perf_counter()
        u = understand(
            str(item["text"]),
            step=Step(item.get("step", "idle")),
            region=item.get("region"),
            library=library,
            today=now.date(),
        )
        score.times_ms.append((time.perf_counter() - started) * 1000)
        have, expected = got(u), want(item.get("expect"))
        wrong = [k for k in KEYS if have[k] != expected[k]]
        labelled = [k for k in KEYS if expected[k] not in (None, False)] or ["nothing"]
        for key in KEYS:
            if expected[key] not in (None, False) or have[key] not in (None, False):
                score.per_key[key][0] += key not in wrong
                score.per_key[key][1] += 1
        score.total += 1
        score.per_lang[item["lang"]][1] += 1
        if not wrong:
            score.right += 1
            score.per_lang[item["lang"]][0] += 1
        else:
            detail = ", ".join(f"{k}: got {have[k]!r} want {expected[k]!r}" for k in wrong)
            score.misses.append(f"{item['id']} [{item['step']}] {item['text']!r} -> {detail}")
        del labelled
    return score

"""How long a very long message holds the event loop (issue 13).

A resident can send 4,096 characters; understanding them and searching the FAQ run on
the event loop, so every other chat waits meanwhile. Prints the median time of one step
(``resident.handle``) for a short message and for 4,096-character ones, at the region
question, the birth-date question and outside a conversation (a FAQ question).

    .venv/bin/python benchmarks/bench_long_messages.py
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from zoneinfo import ZoneInfo

from conversations.context import Context
from conversations.resident import handle
from conversations.state import State, Step, Text
from policies.faq import default_index
from policies.loader import default_library

REPEAT = 7


def median_ms(state: State, text: str, ctx: Context) -> float:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        handle(state, Text(text), ctx)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    library = default_library()
    default_index().search("低保户交多少")  # jieba and the index load once, not measured
    ctx = Context(library, dt.datetime.now(ZoneInfo("Asia/Shanghai")))
    rng = random.Random(13)
    alphabet = "低保户交多少钱新生儿补缴在哪武隆商洛abc 123？"
    questions = {
        "short (低保户交多少)": "低保户交多少",
        "4,096 random characters": "".join(rng.choice(alphabet) for _ in range(4096)),
        "4,096 characters of real questions": (
            "低保户自己掏多少钱，新生儿怎么交，错过了还能补交吗？在哪交" * 200
        )[:4096],
    }
    states = {
        "region question": State(step=Step.REGION),
        "birth question": State(step=Step.BIRTH, region="shangluo"),
        "FAQ, region known": State(step=Step.FAQ, faq_region="shangluo"),
        "FAQ, region asked": State(step=Step.FAQ),
    }
    for label, text in questions.items():
        times = ", ".join(f"{s} {median_ms(st, text, ctx):.1f} ms" for s, st in states.items())
        print(f"{label}: {times}")


if __name__ == "__main__":
    main()

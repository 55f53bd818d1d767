"""How long a very long FAQ question holds the event loop (issue 13).

A resident can send 4,096 characters; everything the FAQ does with them runs on the
event loop, so every other chat waits meanwhile. Prints the median time of one FAQ step
(``resident.handle``) for a short question and for 4,096-character ones.

    .venv/bin/python benchmarks/bench_faq_long.py
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
    for label, text in questions.items():
        known = median_ms(State(step=Step.FAQ, faq_region="shangluo"), text, ctx)
        unknown = median_ms(State(step=Step.FAQ), text, ctx)
        print(f"{label:<36} region known {known:7.1f} ms   region asked {unknown:7.1f} ms")


if __name__ == "__main__":
    main()

"""How long the timeline picture takes to draw and how big it is, against how long the
summary takes to read: the figures behind offering it as a button rather than attaching
it to every quote (README, "The quote").

    .venv/bin/python benchmarks/bench_timeline.py [--write-docs]

--write-docs also writes docs/timeline-<notice>.png, one picture per notice (for the README).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path

from conversations import timeline
from conversations.context import Context
from conversations.quote_view import applicant, render_quote, visible
from conversations.state import State, Step
from policies.engine import quote
from policies.loader import default_library

# Reading speed of Chinese prose on a phone, characters a minute (the low end of the
# 300-500 usually measured for adult readers), to turn the summary's length into seconds.
READING_CPM = 300
DOCS = Path(__file__).resolve().parent.parent / "docs"

# One resident per notice: (region, birth, payment date, categories, tier).
SAMPLES = {
    "dalate-2023": ("dalate", dt.date(1980, 5, 1), dt.date(2023, 4, 10), [], None),
    "fengshan-2023": ("fengshan", dt.date(1980, 5, 1), dt.date(2023, 3, 31), [], 1),
    "shangluo-2024": ("shangluo", dt.date(1980, 5, 1), dt.date(2023, 11, 5), ["dibao"], None),
    "tonghe-2023": ("tonghe", dt.date(1980, 5, 1), dt.date(2022, 11, 5), [], None),
    "wulateqianqi-2024": ("wulateqianqi", dt.date(1980, 5, 1), dt.date(2023, 11, 5), [], None),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    library = default_library()
    ctx = Context(library, dt.datetime(2023, 11, 5, 10, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    times, sizes, reading = [], [], []
    for notice_id, (region, born, paid, cats, tier) in SAMPLES.items():
        state = State(
            step=Step.QUOTED,
            region=region,
            birth_date=born,
            payment_date=paid,
            categories=cats,
            categories_done=True,
            tier=tier,
        )
        q = quote(library, applicant(state))
        notice = next(n for n in library.notices if n.id == q.notice)
        spec = timeline.build(q, notice, paid, ctx.loc)
        png = b""
        for _ in range(args.rounds):
            start = time.perf_counter()
            png = timeline.render_png(spec) or b""
            times.append((time.perf_counter() - start) * 1000)
        sizes.append(len(png))
        summary = visible(render_quote(q, state, ctx).html)
        reading.append(len(summary) / READING_CPM * 60)
        if args.write_docs:
            DOCS.mkdir(exist_ok=True)
            (DOCS / f"timeline-{notice_id}.png").write_bytes(png)
    print(f"draw: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")
    print(f"PNG: {min(sizes) / 1024:.1f}-{max(sizes) / 1024:.1f} KB")
    print(
        f"summary reading time at {READING_CPM} characters/min: "
        f"{min(reading):.0f}-{max(reading):.0f} s"
    )


if __name__ == "__main__":
    main()

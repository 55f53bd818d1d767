"""Quotes per second, in-process (goal: >= 50,000/s on the development machine).

Run by hand: ``.venv/bin/python benchmarks/bench_quotes.py``. The applicants cycle over
every notice, window, category and (where there are tiers) tier, so the figure covers the
engine's real paths rather than one cached case.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

from policies.engine import quote
from policies.loader import default_library
from policies.quote import Applicant


def applicants() -> list[Applicant]:
    lib = default_library()
    out = []
    for notice in lib.notices:
        tiers: list[int | None] = [t.id for t in notice.tiers or []] or [None]
        for window in notice.windows:
            day = window.start or window.end - dt.timedelta(days=30)
            for offset in (0, (window.end - day).days):
                paid = day + dt.timedelta(days=offset)
                for cat in [None, *notice.categories]:
                    for tier in tiers:
                        for born in (dt.date(1970, 5, 1), paid - dt.timedelta(days=30)):
                            out.append(
                                Applicant(
                                    region=notice.region.id,
                                    birth_date=born,
                                    payment_date=paid,
                                    categories=frozenset([cat.id] if cat else []),
                                    tier=tier,
                                )
                            )
    return out


def main(rounds: int = 7) -> None:
    lib = default_library()
    people = applicants()
    for a in people:  # warm the citation cache and check every applicant is quotable
        quote(lib, a)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for a in people:
            quote(lib, a)
        rates.append(len(people) / (time.perf_counter() - start))
    print(f"applicants per round: {len(people)}, rounds: {rounds}")
    print(f"quotes/s: median {statistics.median(rates):,.0f}, best {max(rates):,.0f}")


if __name__ == "__main__":
    main()

"""Cold start to the first FAQ answer: a new Python process imports the FAQ, loads the
notices and the index, and answers one question (goal <= 2 s). The first run after a
change to the notices, entries, term lists or FAQ code builds the index and stores it
(``policies.faq.cache_dir``); later starts load it. Run by hand:
``.venv/bin/python benchmarks/bench_faq_start.py``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

ANSWER_ONE = (
    "from policies.faq import default_index; "
    "print(default_index().search('达旗低保户交多少钱')[0].clause)"
)


def once(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", ANSWER_ONE], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(runs: int = 5) -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "FAQ_CACHE_DIR": cache}
        first = once(env)
        cached = [once(env) for _ in range(runs)]
    print(f"first start (builds and stores the index): {first:.2f} s")
    print(
        f"later starts (stored index), {runs} runs: median {statistics.median(cached):.2f} s,"
        f" max {max(cached):.2f} s (goal <= 2 s)"
    )


if __name__ == "__main__":
    main()

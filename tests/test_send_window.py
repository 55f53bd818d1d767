"""The overall limit as counted where the messages arrive (bot.send_window), on virtual time.

A message reaches Telegram at some moment between its grant and the moment its HTTP call
completes; these tests take the worst of those moments (either end, at random) with
completions delayed at random, and several senders at once, and count the arrivals in
every one-second window.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from test_delivery import assert_paced

from bot.delivery import Pacer
from bot.send_window import Grant, SendWindow

LIMIT = 25


class VirtualTime:
    """Time for tasks running at once: it jumps to the next wake-up when every task waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), wake))
        await wake

    async def run(self, *work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to its end, time jumping whenever every task waits."""
        tasks = [asyncio.ensure_future(w) for w in work]
        while not all(task.done() for task in tasks):
            for _ in range(20):  # everything that can run without time passing runs
                await asyncio.sleep(0)
            if not self._sleepers:
                break
            when, _, wake = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            wake.set_result(None)
        for task in tasks:
            task.result()  # raises what a task raised, or that it was left waiting


class MemoryShared:
    """What the database holds for the processes of one bot (slots and sends), in memory:
    pacers on one virtual clock stand for processes."""

    def __init__(self, clock: VirtualTime, timeout: float) -> None:
        self.clock = clock
        self.window = SendWindow(clock, timeout)
        self.next_slot = 0.0

    async def reserve_slots(self, start: float, count: int, spacing: float) -> float:
        first = max(self.next_slot, start)
        self.next_slot = first + count * spacing
        return first

    async def open_send(self, limit: int, extra: int, timeout: float) -> Grant:
        assert timeout == self.window.timeout
        free = self.window.free_at(limit - extra)
        if free <= self.clock():
            return Grant(self.window.open())
        return Grant(None, free - self.clock())

    async def close_send(self, ticket: int) -> None:
        self.window.close(ticket)


async def assert_limit_held(
    pacers: list[Pacer],
    run: Callable[..., Awaitable[object]],
    *,
    per_pacer: int,
    sends: int,
    seed: int,
    min_rate: float = 0.85,
) -> Counter[int]:
    """``per_pacer`` senders on each pacer (its clock and sleep), ``sends`` each, started by
    ``run``; every HTTP call takes 0 to 400 ms (mostly little) and the message arrives at
    its grant or its completion, at random. No 1 s window of arrivals holds more than the
    limit, and the rate does not stall (``min_rate`` of the limit at least). Returns the
    sends per pacer."""
    rng = random.Random(seed)
    arrivals: list[tuple[float, int]] = []
    by_pacer: Counter[int] = Counter()
    chats = itertools.count(1)

    async def sender(number: int, pacer: Pacer) -> None:
        for _ in range(sends):
            chat = next(chats)
            async with pacer.sending(chat):
                granted = pacer.clock()
                await pacer.sleep(min(rng.expovariate(1 / 0.06), 0.4))
            arrivals.append((rng.choice((granted, pacer.clock())), chat))
            by_pacer[number] += 1

    await run(*(sender(n, p) for n, p in enumerate(pacers) for _ in range(per_pacer)))
    limit = pacers[0].per_second
    assert len(arrivals) == len(pacers) * per_pacer * sends
    assert_paced(arrivals, limit, 0.0)
    # The limit clocks itself by the answers (limit / (1 s + round trip)), it does not stall.
    times = sorted(t for t, _ in arrivals)
    assert (len(times) - 1) / (times[-1] - times[0]) >= min_rate * limit
    return by_pacer


async def test_no_second_of_arrivals_holds_more_than_the_limit_whatever_the_delays() -> None:
    clock = VirtualTime()
    pacer = Pacer(LIMIT, clock=clock, sleep=clock.sleep)
    await assert_limit_held([pacer], clock.run, per_pacer=6, sends=60, seed=14)


async def test_pacers_sharing_their_sends_keep_the_limit_together() -> None:
    """Three processes' pacers sharing slots and sends, as on PostgreSQL."""
    clock = VirtualTime()
    shared = MemoryShared(clock, timeout=20.0)
    pacers = [
        Pacer(LIMIT, clock=clock, sleep=clock.sleep, slots=shared, send_timeout=20.0)
        for _ in range(3)
    ]
    await assert_limit_held(pacers, clock.run, per_pacer=3, sends=30, seed=15)


async def test_the_sends_of_a_dead_process_stop_counting_at_their_timeout() -> None:
    clock = VirtualTime()
    shared = MemoryShared(clock, timeout=20.0)
    # A process granted LIMIT sends and was killed before any completed.
    for _ in range(LIMIT):
        assert (await shared.open_send(LIMIT, 0, 20.0)).ticket is not None
    killed_at = clock()
    live = Pacer(LIMIT, clock=clock, sleep=clock.sleep, slots=shared, send_timeout=20.0)
    sent: list[float] = []

    async def send() -> None:
        async with live.sending(1):
            sent.append(clock())

    await clock.run(send())
    assert killed_at + 20.0 <= sent[0] <= killed_at + 20.0 + 2 * live.spacing


async def test_a_completed_send_counts_one_second_after_its_completion() -> None:
    clock = VirtualTime()
    window = SendWindow(clock)
    tickets = [window.open() for _ in range(3)]
    assert window.free_at(3) == clock() + 1.0  # all in flight: none frees within 1 s
    await clock.run(clock.sleep(5.0))
    window.close(tickets[1])
    assert window.free_at(3) == clock() + 1.0
    await clock.run(clock.sleep(0.4))
    assert window.free_at(3) == clock() + 0.6
    await clock.run(clock.sleep(0.6))
    assert window.free_at(3) < clock()


async def test_a_reply_waits_for_a_place_in_its_process_window() -> None:
    """Interactive replies count in the same window: a reply after a full second of
    broadcast sends waits until the first of them frees its place (at most its max wait)."""
    clock = VirtualTime()
    pacer = Pacer(5, clock=clock, sleep=clock.sleep)
    waits: list[float] = []

    async def scenario() -> None:
        for chat in range(5):
            async with pacer.sending(chat):
                await clock.sleep(0.1)  # each call takes 100 ms
        first_done = 1000.0 + 0.1  # the first send's completion
        async with pacer.sending(99, priority=True) as wait:
            waits.append(wait)
            assert clock() >= first_done + 1.0

    await clock.run(scenario())
    assert 0 < waits[0] <= pacer.interactive_max_wait

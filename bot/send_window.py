"""The overall rate limit as counted where the messages arrive.

A send *occupies* the limit from the moment it is granted until its HTTP call has
completed (Telegram's answer came back, or the failure), plus one second. A send is
granted only while fewer than ``limit`` sends occupy it.

Why that holds at the receiver whatever the delays on the way (an event loop busy with
other work before the request leaves, a slow answer): a message arrives at Telegram at some
moment between its grant and its completion. Take any ``limit + 1`` messages arriving
within one second, and the one of them granted last. Every other one was granted before it
and completed after the first of those arrivals, so less than a second before the last of
them: at that grant all ``limit`` others still occupied the limit, and it would not have
been granted. So no one-second window of arrivals holds more than ``limit`` messages. The
price is the round trip: the sustained rate is ``limit / (1 s + round trip)``, about 99 %
of the limit on a quick link, and lower when the link or the sender is slow (the limit
clocks itself by the answers).

An entry that is never closed (its process died mid-send) stops counting ``timeout``
seconds after its grant, so a SIGKILL does not hold the rate for ever; the sender gives up
on any send taking that long (:class:`bot.delivery.DeliveryWorker`).

:class:`SendWindow` keeps the sends of one process in memory (SQLite: one process sends;
and every process's interactive replies). The processes on PostgreSQL share their broadcast
sends through the database (:meth:`bot.broadcast_store.BroadcastStore.open_send`), the
same rule on the database's clock.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Seconds a send may take before its sender gives up on it, and its entry stops counting:
# above python-telegram-bot's own timeouts together (pool 1 s, connect, write, read 5 s).
SEND_TIMEOUT = 20.0
# Seconds a completed send still occupies the limit.
AFTER = 1.0


@dataclass(frozen=True, slots=True)
class Grant:
    """A send granted (``ticket``, to close when it completes), or not: ``wait`` seconds
    until a place may come free."""

    ticket: int | None
    wait: float = 0.0


class SharedSends(Protocol):
    """The sends of every process of one bot (``BroadcastStore`` on PostgreSQL)."""

    async def open_send(self, limit: int, extra: int, timeout: float) -> Grant:
        """Grant a send if fewer than ``limit - extra`` sends occupy the limit."""
        ...

    async def close_send(self, ticket: int) -> None: ...


class SendWindow:
    """The sends of one process that occupy the limit, on its clock.

    Every grant and completion is a heap operation, not a pass over the sends of the last
    second: at a high limit (or none, as in ``benchmarks/bench_updates.py``) they number
    in the thousands, and each interactive reply asks twice.
    """

    def __init__(self, clock: Callable[[], float], timeout: float = SEND_TIMEOUT) -> None:
        self.clock = clock
        self.timeout = timeout
        self._until: dict[int, float] = {}  # ticket -> until when it occupies the limit
        # (until, ticket), one per time a ticket's end was set: the current one is the
        # entry that matches _until; the others are left to drop out when they come up.
        self._ends: list[tuple[float, int]] = []
        self._replies: set[int] = set()  # tickets of interactive replies
        self._tickets = itertools.count(1)

    def _expire(self, now: float) -> None:
        ends, until = self._ends, self._until
        while ends and (ends[0][0] <= now or until.get(ends[0][1]) != ends[0][0]):
            end, ticket = heapq.heappop(ends)
            if until.get(ticket) == end:  # its current end, and it is over
                del until[ticket]
                self._replies.discard(ticket)

    def free_at(self, limit: int) -> float:
        """When a send may next be granted: -inf (now), or when the first place may come
        free. A send still in flight frees its place a second after it completes at the
        earliest, so not within a second from now; a completed one at its time."""
        now = self.clock()
        self._expire(now)
        if len(self._until) < limit:
            return -math.inf
        return min(self._ends[0][0], now + AFTER)

    def _set(self, ticket: int, until: float) -> None:
        self._until[ticket] = until
        heapq.heappush(self._ends, (until, ticket))

    def open(self, *, reply: bool = False) -> int:
        """Count a send granted now (the caller checked :meth:`free_at`)."""
        ticket = next(self._tickets)
        self._set(ticket, self.clock() + self.timeout)
        if reply:
            self._replies.add(ticket)
        return ticket

    def close(self, ticket: int) -> None:
        """The send completed now: it occupies the limit one second more."""
        if ticket in self._until:
            self._set(ticket, self.clock() + AFTER)

    def replies(self) -> int:
        """This process's interactive replies occupying the limit now."""
        self._expire(self.clock())
        return len(self._replies)

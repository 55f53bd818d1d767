"""The paced, resumable broadcast sender.

:class:`Pacer` keeps two limits: at most ``per_second`` messages in any one-second window
overall, counted where the messages arrive, and one message per ``per_chat_interval``
seconds to any one chat. The overall limit is a window of sends (:mod:`bot.send_window`):
a send occupies it from its grant until its HTTP call completes, plus a second, and is
granted only while fewer than ``per_second`` sends occupy it. A message reaches Telegram
between its grant and its completion, so no second of arrivals holds more than the limit
however long a request waits to leave (an event loop busy with residents' updates) or its
answer takes; the sustained rate is ``per_second / (1 s + round trip)``. Within it, sends
are smoothed (at least ``(1 + margin) / per_second`` apart, margin 2 %) rather than sent
in bursts. Time is ``time.time`` (the processes of one bot share the slots' schedule, so
the clock is the wall clock) and ``asyncio.sleep`` unless a test injects its own.

Interactive replies have priority: ``async with pacer.sending(chat_id, priority=True):``
(or ``async with worker.interactive(chat_id):``) around the reply. An interactive send does
not wait for the broadcast send in flight, only for the next free slot of the overall
limit, which the broadcast lane leaves to it, and for a place in its process's window of
sends. The wait is therefore about ``(k + 1) * (1 + margin) / per_second`` (41 ms at 25/s)
when ``k`` other interactive replies are already waiting and the window has room, and never
more than ``interactive_max_wait`` (1 s): past that the reply goes anyway, so only a burst
of interactive replies above the limit by itself can exceed the limit. The per-chat
interval does not hold a reply (a conversation answers each press at once, and Telegram
allows short bursts in a chat), but a reply does hold the next broadcast message to that
chat. Interactive sends count against the overall limit, which the broadcast absorbs by
slowing down; a RetryAfter hold applies to the broadcast lane only.

:class:`DeliveryWorker` claims one recipient per send slot (``concurrency`` slots, default
1), commits the claim, waits for the pacer, sends through an injected
``async send(chat_id, text)`` and commits the outcome:

* ``RetryAfter``: the broadcast lane holds for the time Telegram asks, then the *same*
  recipient is retried; this is not a failure and uses no retry budget.
* ``Forbidden``: the recipient blocked the bot; the row becomes ``unsubscribed`` and the
  subscription inactive.
* ``BadRequest``: permanent (chat not found, text rejected): ``failed``.
* other ``NetworkError`` (``TimedOut`` included), or no answer within the pacer's
  ``send_timeout`` (20 s, above python-telegram-bot's own timeouts; past it the send stops
  occupying the rate limit, so it is given up): retried with exponential backoff
  (``backoff``, doubled each time, at most ``max_backoff``) up to ``max_attempts`` attempts,
  then ``failed``. A ``TimedOut`` whose request did reach Telegram is sent twice: like the
  crash window below, that cannot be told apart without an idempotency key.
* anything else: ``failed`` with the exception's class name (never its message).

A text longer than one Telegram message (4,096 characters) goes in parts split at line
breaks, each paced like a message; the parts sent are committed, so a crash repeats at
most the part in flight, never the parts before it.

Every process runs a worker on the same rows (:mod:`bot.broadcast_store`):

* A claim is a lease of ``lease`` seconds (20 by default) that the worker renews three
  times per lease while it lives, sends in flight or not. When a process dies (SIGKILL) its
  leases run out and any worker claims its rows again, so a killed worker's recipients are
  sent within about a lease; a restarted process has a new owner id and takes nothing from
  a live one. A worker starts no send within (per-chat interval + 1 s) of its lease's end
  (the database was away and it could not renew): the row is left to the next holder.
* The overall limit holds across processes: every broadcast send is granted on one window
  of sends in the database (``open_send``, the database's clock; a send of a process that
  died stops counting ``send_timeout`` seconds after its grant, and every send is given up
  after that long). The slots that space the sends are reserved on one schedule there too
  (``reserve_slots``, with the claim), and a send waits for its slot before it asks for
  its grant. Interactive replies keep their lane in their process: they count in their
  process's window, with that process's broadcast grants (``extra``), and on the shared
  schedule with the process's next reservation (replies of the last second only); the
  other processes' grants do not see them. A RetryAfter holds this process at once and,
  through the schedule, the others after the slots they already reserved.
* The per-chat interval holds across processes: a chat is not claimed while another
  broadcast's message to it is in flight or was sent less than the interval ago.
* On SQLite one process sends: the holder of the sender lease; the others' workers wait
  and take over when it dies.

Crash window: after a SIGKILL at most ``concurrency`` recipients (default 1) are left
``inflight`` with a send that may have reached Telegram; another worker (or the restarted
process) sends them again once their lease runs out, so at most that many messages can
arrive twice. Everything else is either ``pending`` (never sent), claimed and not sent,
or has its outcome committed. A worker stopped cleanly hands its unsent claims back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import math
import os
import secrets
import socket
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from bot import metrics
from bot.broadcast_store import BroadcastStore, Claimed
from bot.send_window import SEND_TIMEOUT, Grant, SendWindow, SharedSends
from bot.splitting import split_html
from conversations.broadcast import Progress

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
SendFn = Callable[[int, str], Awaitable[object]]
ProgressFn = Callable[[Progress], Awaitable[None]]

# Seconds before looking again for rows that may come free (a chat's interval, a lease).
RECHECK = 0.2


class SharedPacing(SharedSends, Protocol):
    """Where the processes of one bot share their pacing (``BroadcastStore``): the send
    slots that space their broadcast sends, and the sends that occupy the limit."""

    async def reserve_slots(self, start: float, count: int, spacing: float) -> float: ...


class Pacer:
    """Rate limits for all sends of one bot: overall per second and per chat."""

    def __init__(
        self,
        per_second: int = 25,
        per_chat_interval: float = 1.0,
        *,
        margin: float = 0.02,
        interactive_max_wait: float = 1.0,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        slots: SharedPacing | None = None,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        if per_second < 1:
            raise ValueError("per_second must be at least 1")
        self.per_second = per_second
        self.per_chat_interval = per_chat_interval
        self.margin = margin
        self.interactive_max_wait = interactive_max_wait
        self.clock = clock
        self.sleep = sleep
        self.send_timeout = send_timeout
        self.spacing = (1.0 + margin) / per_second
        self._slack = min(margin, self.spacing / 2)
        self._late = margin / 2  # a shared slot used this late still keeps the spacing
        self._last_slot = -math.inf
        # This process's sends in flight or completed less than a second ago: the limit as
        # counted where the messages arrive (bot.send_window).
        self.window = SendWindow(clock, send_timeout)
        self._last_by_chat: dict[int, float] = {}
        self._hold_until = -math.inf
        self._priority_waiting = 0
        self._no_priority = asyncio.Event()
        self._no_priority.set()
        # Shared with the other processes: the slots, reserved as sends want them (one per
        # broadcast send waiting here), with this process's replies of the last second;
        # and the broadcast sends occupying the limit.
        self.slots = slots
        self.shared = slots is not None
        self._wanting = 0
        self._round_trip = 0.0
        self._reserved: deque[float] = deque()
        self._replies: deque[float] = deque()
        self._reserving = asyncio.Lock()
        self._grant_failures = 0

    def hold(self, seconds: float) -> None:
        """No broadcast send for ``seconds`` (Telegram's RetryAfter); interactive ones go on."""
        self._hold_until = max(self._hold_until, self.clock() + seconds)
        self._reserved.clear()  # the next reservation starts after the hold, for everyone

    def _ready_at(self, chat_id: int, priority: bool) -> float:
        ready = max(self._last_slot + self.spacing, self.window.free_at(self.per_second))
        if priority:
            # A conversation answers each press or message at once (Telegram allows short
            # bursts in a chat); its messages still space the broadcast's to that chat.
            return ready
        last = self._last_by_chat.get(chat_id)
        if last is not None:
            ready = max(ready, last + self.per_chat_interval)
        return max(ready, self._hold_until)

    @contextlib.asynccontextmanager
    async def sending(
        self, chat_id: int, *, priority: bool = False, slot: float | None = None
    ) -> AsyncIterator[float]:
        """Wait until a message to ``chat_id`` may be sent, and send it in the block; yields
        the wait. The send occupies the overall limit until the block ends, plus a second.

        ``priority`` is for interactive replies: they go before any waiting broadcast send
        and wait at most ``interactive_max_wait`` seconds. ``slot``: a shared send slot
        already reserved for this send (with its claim), used if it is not past.
        """
        wait, local, shared = await self._acquire(chat_id, priority, slot)
        try:
            yield wait
        finally:
            await self._release(local, shared)

    async def _acquire(
        self, chat_id: int, priority: bool, slot: float | None
    ) -> tuple[float, int, int | None]:
        """Wait and count the send: (the wait, its local ticket, its shared one)."""
        start = self.clock()
        granted: int | None = None
        spaced = False  # a shared slot reached
        if priority:
            self._priority_waiting += 1
            self._no_priority.clear()
        try:
            while True:
                if not priority and self._priority_waiting:
                    await self._no_priority.wait()
                    continue
                now = self.clock()
                ready = self._ready_at(chat_id, priority)
                if priority:
                    ready = min(ready, start + self.interactive_max_wait)
                if ready <= now and (priority or not self.shared):
                    break
                if ready <= now and not spaced:
                    # The shared slot: sent within ``_late`` after it, or left unused.
                    if slot is None:
                        slot = await self._take_slot(now)
                        now = self.clock()
                    if slot + self._late < now:
                        slot = None
                        continue
                    ready, spaced = slot, slot <= now
                if ready <= now:
                    assert slot is not None
                    grant = await self._open_shared()
                    now = self.clock()
                    if grant.ticket is not None:
                        granted, ready = grant.ticket, slot
                        break
                    # The window is full: ask again when a place may be free (the slot's
                    # spacing is kept: a send of every process waits as long).
                    slot = ready = now + grant.wait
                await self.sleep(ready - now)
        finally:
            if priority:
                self._priority_waiting -= 1
                if not self._priority_waiting:
                    self._no_priority.set()
        # The overall schedule keeps its slots: a send woken a little late (the event loop's
        # sleep overshoots by a millisecond or two, 3-5 % of a slot at 25/s) counts at its
        # slot, so lateness does not add up into a lower rate. The credit is at most the
        # margin; the window of sends (bot.send_window) keeps the limit whatever the slots.
        slot = ready if granted is not None or now - ready <= self._slack else now
        self._record(chat_id, slot, now)
        if priority and self.shared:
            self._replies.append(now)
        return now - start, self.window.open(reply=priority), granted

    async def _open_shared(self) -> Grant:
        """A broadcast send granted on the window every process shares, counting this
        process's replies; or how long to wait (the database is away: no send meanwhile)."""
        assert self.slots is not None
        try:
            grant = await self.slots.open_send(
                self.per_second, self.window.replies(), self.send_timeout
            )
        except Exception:
            self._grant_failures += 1
            logger.exception("granting a send failed (%d)", self._grant_failures)
            return Grant(None, min(2.0**self._grant_failures, 30.0))
        self._grant_failures = 0
        return grant

    async def _release(self, local: int, shared: int | None) -> None:
        self.window.close(local)
        if shared is None:
            return
        assert self.slots is not None
        try:
            await self.slots.close_send(shared)
        except Exception:  # it stops counting at its timeout instead
            logger.exception("closing a send failed")

    async def _take_slot(self, now: float) -> float:
        """A send slot on the shared schedule, this caller's alone (reserving as many as
        there are callers waiting when none is left that is not already past)."""
        self._wanting += 1
        try:
            async with self._reserving:
                failures = 0
                while True:
                    while self._reserved and self._reserved[0] + self._late < now:
                        self._reserved.popleft()
                    if self._reserved:
                        return self._reserved.popleft()
                    try:
                        await self._reserve(now)
                    except Exception:  # the database is away: no broadcast send meanwhile
                        failures += 1
                        logger.exception("reserving send slots failed (%d)", failures)
                        await self.sleep(min(2.0**failures, 30.0))
                    now = self.clock()
        finally:
            self._wanting -= 1

    async def _reserve(self, now: float) -> None:
        assert self.slots is not None
        while self._replies and self._replies[0] <= now - 1.0:
            self._replies.popleft()
        replies = len(self._replies)  # already sent: their slots are taken and left unused
        count = replies + self._wanting
        # Reserved from a little ahead (twice the last reservation's round trip), so the
        # first slot is not already past when the answer comes.
        start = max(now + 2 * self._round_trip, self._hold_until)
        first = await self.slots.reserve_slots(start, count, self.spacing)
        self._round_trip = 0.7 * self._round_trip + 0.3 * max(self.clock() - now, 0.0)
        self._replies.clear()
        self._reserved.extend(first + i * self.spacing for i in range(replies, count))

    def _record(self, chat_id: int, slot: float, now: float) -> None:
        self._last_slot = slot
        self._last_by_chat[chat_id] = now
        if len(self._last_by_chat) > 4 * self.per_second + 1024:
            cutoff = now - self.per_chat_interval
            for chat in [c for c, t in self._last_by_chat.items() if t <= cutoff]:
                del self._last_by_chat[chat]


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class DeliveryWorker:
    """Sends the queued broadcasts, one recipient per slot at a time, at the pacer's rate."""

    def __init__(
        self,
        store: BroadcastStore,
        send: SendFn,
        pacer: Pacer | None = None,
        *,
        concurrency: int = 1,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        poll_interval: float = 2.0,
        on_progress: ProgressFn | None = None,
        progress_interval: float = 5.0,
        split: Callable[[str], list[str]] | None = None,
        lease: float = 20.0,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.send = send
        self.pacer = pacer or Pacer()
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.split = split or split_html
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_report: dict[int, float] = {}
        # Leases: who this worker is to the other processes, and until when (by this
        # worker's count, which errs early) each row it holds is still its own.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease = dt.timedelta(seconds=lease)
        # No send starts this close to a lease's end: once it ends the row goes to another
        # process, which must find the chat's interval already over.
        self._lease_margin = dt.timedelta(seconds=self.pacer.per_chat_interval + 1.0)
        if self.lease <= 2 * self._lease_margin:
            raise ValueError("the lease must be longer than twice (per-chat interval + 1 s)")
        self._held: dict[tuple[int, int], dt.datetime] = {}
        self._claiming = asyncio.Lock()
        self._claimed: deque[Claimed] = deque()  # claimed for slots about to take them
        self._round_trip = 0.0
        self._wanting = 0
        self._next_takeover = dt.datetime.min.replace(tzinfo=dt.UTC)

    # ------------------------------------------------------------------ control

    async def run(self) -> None:
        """Send until :meth:`stop`, beside the workers of any other process."""
        await self._slots(until_idle=False)

    async def drain(self) -> None:
        """Send until no recipient is left that this worker could claim: scripts and tests."""
        await self._slots(until_idle=True)

    def wake(self) -> None:
        """A broadcast was queued: look now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the sends in flight and return from :meth:`run`."""
        self._stopping = True
        self._wake.set()

    @contextlib.asynccontextmanager
    async def interactive(self, chat_id: int) -> AsyncIterator[None]:
        """Wrap an interactive reply: it goes ahead of the broadcast (see the module doc)."""
        async with self.pacer.sending(chat_id, priority=True):
            yield

    # ------------------------------------------------------------------ the loop

    async def _slots(self, *, until_idle: bool) -> None:
        self._stopping = False
        renewing = asyncio.create_task(self._renew_forever())
        try:
            await asyncio.gather(*(self._slot(until_idle) for _ in range(self.concurrency)))
        finally:
            renewing.cancel()  # cancelled (a crash, as far as the database can tell): the
            # leases run out and other workers take the rows over
        released = await self._db(lambda: self.store.release(self.owner))
        if released:
            logger.info("handed %d claimed recipient(s) back at stop", released)

    async def _slot(self, until_idle: bool) -> None:
        while not self._stopping:
            claimed = await self._db(self._next)
            if claimed is None:
                return
            for item in claimed:
                await self._deliver(item)
            if claimed:
                continue
            # Nothing to claim now: rows may still come free (a chat's interval ends,
            # another worker's lease runs out); look again soon, or at the next poll.
            if self._stopping:
                return
            free_in = await self._db(lambda: self.store.waiting(self.owner))
            if free_in is None and (until_idle or self._stopping):
                return
            if free_in is not None:
                self._next_takeover = self.store.now()
            pause = self.poll_interval if free_in is None else max(free_in, RECHECK)
            if until_idle:
                await self.pacer.sleep(pause)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(pause, self.poll_interval))

    async def _next(self) -> list[Claimed]:
        """One recipient for a slot (or none): the slots wanting one at the same moment
        share one claim, which keeps the claims (they take turns across processes) few."""
        self._wanting += 1
        try:
            async with self._claiming:
                if not self._claimed:
                    self._claimed.extend(await self._claim(self._wanting))
                return [self._claimed.popleft()] if self._claimed else []
        finally:
            self._wanting -= 1

    async def _claim(self, count: int) -> list[Claimed]:
        start = self.store.now()
        takeover = start >= self._next_takeover  # rows of dead workers: now and then
        if takeover:
            self._next_takeover = start + self.lease / 4
        pacer = self.pacer
        asked = pacer.clock()
        claimed = await self.store.claim_next(
            count,
            owner=self.owner,
            lease=self.lease.total_seconds(),
            interval=pacer.per_chat_interval,
            expired=takeover,
            # The send slots with the claim (one transaction less per send), from a little
            # ahead so that the first is not past when the answer comes.
            slots=(asked + 2 * self._round_trip, pacer.spacing) if pacer.shared else None,
        )
        self._round_trip = 0.7 * self._round_trip + 0.3 * max(pacer.clock() - asked, 0.0)
        if takeover and len(claimed) == count:
            self._next_takeover = start  # there may be more: look again at the next claim
        for item in claimed:
            self._held[item.broadcast_id, item.chat_id] = start + self.lease
        return claimed

    async def _renew_forever(self) -> None:
        """Renew this worker's leases a few times per lease, sends in flight or not."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            start, held = self.store.now(), list(self._held)
            try:
                await self.store.renew(self.owner, self.lease.total_seconds())
            except Exception:
                logger.exception("renewing the delivery leases failed")
                continue
            for key in held:
                if key in self._held:
                    self._held[key] = start + self.lease

    def _still_held(self, item: Claimed) -> bool:
        until = self._held.get((item.broadcast_id, item.chat_id))
        return until is not None and self.store.now() < until - self._lease_margin

    async def _deliver(self, item: Claimed) -> None:
        parts = self.split(item.text)
        status, error, attempts = "sent", "", 0
        for index in range(item.parts_sent, len(parts)):
            result = await self._send_part(item, parts[index])
            if result is None:
                # Stopping: the row goes back to pending at the end of run(). Or the lease
                # is about to end (the database was away): another worker sends it.
                return
            status, error, used = result
            attempts += used
            if status != "sent":
                break
            if index + 1 < len(parts):
                await self._db(
                    functools.partial(
                        self.store.mark_part, item.broadcast_id, item.chat_id, index + 1
                    ),
                    until_done=True,
                )
        if status == "failed":
            logger.info("broadcast %d: a delivery failed (%s)", item.broadcast_id, error)
        await self._outcome(item, status, error, attempts)
        self._held.pop((item.broadcast_id, item.chat_id), None)

    async def _send_part(self, item: Claimed, text: str) -> tuple[str, str, int] | None:
        """Send one message, retrying as the module doc says: (status, error, attempts)."""
        broadcast_id, chat_id = item.broadcast_id, item.chat_id
        attempts = 0
        network_failures = 0
        while True:
            if self._stopping:
                return None
            try:
                async with self.pacer.sending(chat_id, slot=item.slot if attempts == 0 else None):
                    if not self._still_held(item):
                        logger.warning("broadcast %d: a lease ran out before a send", broadcast_id)
                        self._held.pop((broadcast_id, chat_id), None)
                        return None
                    attempts += 1
                    # Bounded: past the timeout the send stops occupying the rate limit.
                    async with asyncio.timeout(self.pacer.send_timeout):
                        await self.send(chat_id, text)
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                logger.info("broadcast %d: Telegram asks to wait %.1f s", broadcast_id, seconds)
                self.pacer.hold(seconds)
                continue
            except Forbidden as exc:
                return "unsubscribed", type(exc).__name__, attempts
            except BadRequest as exc:
                return "failed", type(exc).__name__, attempts
            except (NetworkError, TimeoutError) as exc:
                network_failures += 1
                if network_failures < self.max_attempts:
                    delay = min(self.backoff * 2 ** (network_failures - 1), self.max_backoff)
                    await self.pacer.sleep(delay)
                    continue
                return "failed", type(exc).__name__, attempts
            except Exception as exc:
                return "failed", type(exc).__name__, attempts
            return "sent", "", attempts

    async def _outcome(self, item: Claimed, status: str, error: str, attempts: int) -> None:
        store, bid, chat = self.store, item.broadcast_id, item.chat_id

        metrics.BROADCAST.labels(status).inc()

        def record() -> Awaitable[bool]:
            if status == "sent":
                return store.mark_sent(bid, chat, attempts)
            if status == "unsubscribed":
                return store.mark_unsubscribed(bid, chat, attempts, error)
            return store.mark_failed(bid, chat, error, attempts)

        finished = await self._db(record, until_done=True)
        if self.on_progress is None:
            return
        now = self.pacer.clock()
        last = self._last_report.setdefault(item.broadcast_id, now)
        if not finished and now - last < self.progress_interval:
            return
        self._last_report[item.broadcast_id] = now
        progress = await self._db(lambda: self.store.progress(item.broadcast_id))
        if progress is None:
            return
        try:
            await self.on_progress(progress)
        except Exception:
            logger.exception("broadcast %d: the progress callback failed", item.broadcast_id)
        if finished:
            self._last_report.pop(item.broadcast_id, None)

    async def _db(self, op: Callable[[], Awaitable[T]], *, until_done: bool = False) -> T | None:
        """Run a store operation, retrying with backoff while the database is unavailable.

        With ``until_done`` it retries even while stopping (an outcome must be recorded:
        a send left ``inflight`` would be repeated after a restart). None when stopped.
        """
        failures = 0
        while True:
            try:
                return await op()
            except Exception:
                failures += 1
                logger.exception("delivery store operation failed (%d)", failures)
                if self._stopping and not until_done:
                    return None
                await self.pacer.sleep(min(self.backoff * 2 ** (failures - 1), self.max_backoff))

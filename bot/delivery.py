"""The paced, resumable broadcast sender.

:class:`Pacer` spaces sends: at most ``per_second`` messages in any one-second window
overall and one message per ``per_chat_interval`` seconds to any one chat. Sends are
smoothed (at least ``(1 + margin) / per_second`` apart) rather than sent in bursts, and the
``margin`` (default 2 %) absorbs the jitter between the moment a request leaves and the
moment Telegram counts it. Time is ``time.monotonic`` and ``asyncio.sleep`` unless a test
injects its own.

Interactive replies have priority: ``await pacer.acquire(chat_id, priority=True)`` (or
``async with worker.interactive(chat_id):``) before the reply. An interactive send does not
wait for the broadcast send in flight, only for the next free slot of the overall limit,
which the broadcast lane leaves to it. The wait is therefore at most
``(k + 1) * (1 + margin) / per_second`` (41 ms at 25/s) when ``k`` other interactive
replies are already waiting, and never more than ``interactive_max_wait`` (1 s): past that
the reply goes anyway, so only a burst of interactive replies above the limit by itself can
exceed the limit. The per-chat interval does not hold a reply (a conversation answers each
press at once, and Telegram allows short bursts in a chat), but a reply does hold the next
broadcast message to that chat. Interactive sends count against the overall limit, which
the broadcast absorbs by slowing down; a RetryAfter hold applies to the broadcast lane only.

:class:`DeliveryWorker` claims one recipient per send slot (``concurrency`` slots, default
1), commits the claim, waits for the pacer, sends through an injected
``async send(chat_id, text)`` and commits the outcome:

* ``RetryAfter``: the broadcast lane holds for the time Telegram asks, then the *same*
  recipient is retried; this is not a failure and uses no retry budget.
* ``Forbidden``: the recipient blocked the bot; the row becomes ``unsubscribed`` and the
  subscription inactive.
* ``BadRequest``: permanent (chat not found, text rejected): ``failed``.
* other ``NetworkError`` (``TimedOut`` included): retried with exponential backoff
  (``backoff``, doubled each time, at most ``max_backoff``) up to ``max_attempts`` attempts,
  then ``failed``. A ``TimedOut`` whose request did reach Telegram is sent twice: like the
  crash window below, that cannot be told apart without an idempotency key.
* anything else: ``failed`` with the exception's class name (never its message).

A text longer than one Telegram message (4,096 characters) goes in parts split at line
breaks, each paced like a message; the parts sent are committed, so a crash repeats at
most the part in flight, never the parts before it.

Crash window: after a SIGKILL at most ``concurrency`` recipients (default 1) are left
``inflight``; :meth:`DeliveryWorker.run` calls ``recover()`` first and sends them again, so
at most that many messages can arrive twice. Everything else is either ``pending`` (never
sent) or has its outcome committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import math
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from bot import metrics
from bot.broadcast_store import BroadcastStore, Claimed
from bot.splitting import split_html
from conversations.broadcast import Progress

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
SendFn = Callable[[int, str], Awaitable[object]]
ProgressFn = Callable[[Progress], Awaitable[None]]


class Pacer:
    """Rate limits for all sends of one bot: overall per second and per chat."""

    def __init__(
        self,
        per_second: int = 25,
        per_chat_interval: float = 1.0,
        *,
        margin: float = 0.02,
        interactive_max_wait: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if per_second < 1:
            raise ValueError("per_second must be at least 1")
        self.per_second = per_second
        self.per_chat_interval = per_chat_interval
        self.margin = margin
        self.interactive_max_wait = interactive_max_wait
        self.clock = clock
        self.sleep = sleep
        self._spacing = (1.0 + margin) / per_second
        self._slack = min(margin, self._spacing / 2)
        self._window: deque[float] = deque(maxlen=per_second)  # the last per_second sends
        self._last_by_chat: dict[int, float] = {}
        self._hold_until = -math.inf
        self._priority_waiting = 0
        self._no_priority = asyncio.Event()
        self._no_priority.set()

    def hold(self, seconds: float) -> None:
        """No broadcast send for ``seconds`` (Telegram's RetryAfter); interactive ones go on."""
        self._hold_until = max(self._hold_until, self.clock() + seconds)

    def _ready_at(self, chat_id: int, priority: bool) -> float:
        ready = -math.inf
        if self._window:
            ready = self._window[-1] + self._spacing
            if len(self._window) == self.per_second:
                ready = max(ready, self._window[0] + 1.0 + self.margin)
        if priority:
            # A conversation answers each press or message at once (Telegram allows short
            # bursts in a chat); its messages still space the broadcast's to that chat.
            return ready
        last = self._last_by_chat.get(chat_id)
        if last is not None:
            ready = max(ready, last + self.per_chat_interval)
        return max(ready, self._hold_until)

    async def acquire(self, chat_id: int, *, priority: bool = False) -> float:
        """Wait until a message to ``chat_id`` may be sent and count it; returns the wait.

        ``priority`` is for interactive replies: they go before any waiting broadcast send
        and wait at most ``interactive_max_wait`` seconds.
        """
        start = self.clock()
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
                if ready <= now:
                    break
                await self.sleep(ready - now)
        finally:
            if priority:
                self._priority_waiting -= 1
                if not self._priority_waiting:
                    self._no_priority.set()
        # The overall schedule keeps its slots: a send woken a little late (the event loop's
        # sleep overshoots by a millisecond or two, 3-5 % of a slot at 25/s) counts at its
        # slot, so lateness does not add up into a lower rate. The credit is at most the
        # margin, so any per_second sends in a row still span more than a second.
        slot = ready if now - ready <= self._slack else now
        self._record(chat_id, slot, now)
        return now - start

    def _record(self, chat_id: int, slot: float, now: float) -> None:
        self._window.append(slot)
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

    # ------------------------------------------------------------------ control

    async def run(self) -> None:
        """Recover what a crash left in flight, then send until :meth:`stop`."""
        recovered = await self.store.recover()
        if recovered:
            logger.warning("resending %d message(s) left in flight by a crash", recovered)
        await self._slots(until_idle=False)

    async def drain(self) -> None:
        """Send until nothing is left to claim (no recovery): scripts and tests."""
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
        await self.pacer.acquire(chat_id, priority=True)
        yield

    # ------------------------------------------------------------------ the loop

    async def _slots(self, *, until_idle: bool) -> None:
        self._stopping = False
        await asyncio.gather(*(self._slot(until_idle) for _ in range(self.concurrency)))

    async def _slot(self, until_idle: bool) -> None:
        while not self._stopping:
            claimed = await self._db(lambda: self.store.claim_next(1))
            if claimed is None:
                return
            if not claimed:
                if until_idle:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                continue
            for item in claimed:
                await self._deliver(item)

    async def _deliver(self, item: Claimed) -> None:
        parts = self.split(item.text)
        status, error, attempts = "sent", "", 0
        for index in range(item.parts_sent, len(parts)):
            result = await self._send_part(item.broadcast_id, item.chat_id, parts[index])
            if result is None:
                return  # stopping: the row stays in flight and is sent again after recover()
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

    async def _send_part(
        self, broadcast_id: int, chat_id: int, text: str
    ) -> tuple[str, str, int] | None:
        """Send one message, retrying as the module doc says: (status, error, attempts)."""
        attempts = 0
        network_failures = 0
        while True:
            if self._stopping:
                return None
            await self.pacer.acquire(chat_id)
            attempts += 1
            try:
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
            except NetworkError as exc:
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

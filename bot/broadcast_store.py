"""Subscriptions, broadcasts and one durable status row per recipient (SQLAlchemy Core).

The tables live on :data:`bot.storage.metadata` and are made by the migrations
(``bot/migrations``), as ``Store.init()`` runs them. Every function runs one short
transaction through :meth:`bot.storage.Store._run`, on SQLite and PostgreSQL alike.

A delivery row moves ``pending`` → ``inflight`` → ``sent`` | ``failed`` | ``unsubscribed``.
The claim (``pending`` → ``inflight``) is committed *before* the message is sent and the
outcome is committed right after, so after a crash only the rows left ``inflight`` are in
doubt. A claim is a lease: it records the worker holding the row (``lease_owner``) and until
when (``lease_until``); a live worker renews it, and a row whose lease ran out (its process
died) is claimed again by any worker and sent again. Those are the only sends that can
repeat (Telegram has no idempotency key).

Every process's worker claims from the same rows. On PostgreSQL claims take turns on an
advisory lock (with ``FOR UPDATE SKIP LOCKED`` on the rows), so a claim sees the ones
committed before it: that is what keeps the per-chat interval across processes, as a chat
is not claimed while another broadcast's message to it is in flight or was sent less than
the interval ago. On SQLite one process sends: the holder of the sender lease in
``broadcast_pacing``. That row also holds the overall rate's next free send slot, from
which every process reserves its sends (:meth:`BroadcastStore.reserve_slots`). On
PostgreSQL the broadcast sends of every process that occupy the overall limit are rows of
``broadcast_sends`` (:meth:`BroadcastStore.open_send`, see :mod:`bot.send_window`).

Texts are stored once per broadcast and language (``broadcast_texts``); each delivery row
records the recipient's language, so a resumed broadcast sends exactly what was previewed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Interval,
    Table,
    Text,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.send_window import AFTER, Grant
from bot.storage import Store, metadata
from conversations.broadcast import Progress

T = TypeVar("T")

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("region", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("subscribed_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_subscriptions_region_active", "region", "active"),
)

broadcasts = Table(
    "broadcasts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("template", Text, nullable=False),
    Column("region", Text, nullable=False),
    Column("created_by", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),  # queued | sending | done | cancelled
    Column("total", Integer, nullable=False),
    # Who asked and what for (e.g. a staff member's preview, a reminder's date): queuing
    # the same key again returns the broadcast queued the first time.
    Column("request_key", Text, unique=True),
    Column("notify_chat", BigInteger),  # progress messages go here
    Column("notify_language", Text),
)

broadcast_texts = Table(
    "broadcast_texts",
    metadata,
    Column(
        "broadcast_id",
        Integer,
        ForeignKey("broadcasts.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("language", Text, primary_key=True),
    Column("text", Text, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "broadcast_id",
        Integer,
        ForeignKey("broadcasts.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("language", Text, nullable=False),
    # pending | inflight | sent | failed | unsubscribed
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    # A text longer than one Telegram message goes in parts; those sent are not repeated.
    Column("parts_sent", Integer, nullable=False, default=0),
    Column("last_error", Text),  # an exception class name, never message text or user data
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The worker holding an ``inflight`` row, and until when unless it renews.
    Column("lease_owner", Text),
    Column("lease_until", DateTime(timezone=True)),
    Index("ix_deliveries_status", "status", "broadcast_id", "chat_id"),
    Index("ix_deliveries_chat_id", "chat_id"),  # a chat's other deliveries: its interval
)

# One row (PACING_ROW) shared by every process.
pacing = Table(
    "broadcast_pacing",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    # The overall limit's next free send slot, in seconds since the epoch: every process
    # reserves its broadcast sends from it, a few at a time.
    Column("next_slot", Float, nullable=False),
    # SQLite: the one worker that sends broadcasts, and until when unless it renews.
    Column("sender", Text),
    Column("sender_until", DateTime(timezone=True)),
)
PACING_ROW = 1
# A next slot further ahead than this was left by a clock that jumped back: start afresh.
MAX_AHEAD = 3600.0
# Claims on PostgreSQL take turns on this advisory lock: two int4 keys, a key space apart
# from the one-bigint locks the conversations take on chat ids (bot.storage).
CLAIM_LOCK = (0x79696261, 1)  # "yiba", claims
SEND_LOCK = (0x79696261, 2)  # grants of sends (broadcast_sends)

# PostgreSQL: the broadcast sends of every process that occupy the overall limit, from
# their grant until their completion plus a second (bot.send_window), on the database's
# clock; rows are deleted once they no longer count.
sends = Table(
    "broadcast_sends",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("started", DateTime(timezone=True), nullable=False),
    # The completion + 1 s once the send completed; until then the grant + the send
    # timeout, so that the send of a process that died stops counting.
    Column("occupies_until", DateTime(timezone=True), nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", BigInteger, nullable=False),  # a Telegram user id
    Column("action", Text, nullable=False),
    Column("broadcast_id", Integer),
    Column("detail", Text, nullable=False),
)

reminder_settings = Table(
    "reminder_settings",
    metadata,
    Column("region", Text, primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("changed_by", BigInteger, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

TABLES = (
    subscriptions,
    broadcasts,
    broadcast_texts,
    deliveries,
    audit,
    reminder_settings,
    pacing,
    sends,
)
ACTIVE_BROADCAST = ("queued", "sending")
UNFINISHED = ("pending", "inflight")

#: A broadcast's text per recipient language: a mapping, or a callback rendering one.
Texts = Mapping[str, str] | Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Subscriber:
    chat_id: int
    region: str
    language: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """One recipient claimed for sending (its row is ``inflight``)."""

    broadcast_id: int
    chat_id: int
    text: str
    parts_sent: int = 0
    slot: float | None = None  # a send slot reserved with the claim (see ``claim_next``)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _upsert(conn: Connection, table: Table) -> Any:
    """An INSERT that takes ``on_conflict_do_update`` (PostgreSQL's and SQLite's alike)."""
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _progress(ids: list[int]) -> Callable[[Connection], list[Progress]]:
    """The broadcasts ``ids`` with their counts per delivery status, in that order."""

    def work(conn: Connection) -> list[Progress]:
        if not ids:
            return []
        heads = {
            int(row.id): row
            for row in conn.execute(select(broadcasts).where(broadcasts.c.id.in_(ids)))
        }
        counts: dict[int, dict[str, int]] = {i: {} for i in heads}
        for row in conn.execute(
            select(deliveries.c.broadcast_id, deliveries.c.status, func.count().label("n"))
            .where(deliveries.c.broadcast_id.in_(ids))
            .group_by(deliveries.c.broadcast_id, deliveries.c.status)
        ):
            counts[int(row.broadcast_id)][row.status] = int(row.n)
        return [
            Progress(
                i,
                heads[i].status,
                int(heads[i].total),
                **counts[i],
                template=heads[i].template,
                region=heads[i].region,
                notify_chat=heads[i].notify_chat,
                notify_language=heads[i].notify_language,
            )
            for i in ids
            if i in heads
        ]

    return work


def _aware(when: dt.datetime) -> dt.datetime:
    """SQLite returns the stored times without their zone (they are UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _pacing_row(conn: Connection) -> None:
    """The shared pacing row, made on first use (and after the tests wipe the tables)."""
    stmt = _upsert(conn, pacing).values(id=PACING_ROW, next_slot=0.0)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=[pacing.c.id]))


def _reserve(conn: Connection, start: float, count: int, spacing: float) -> float:
    """See :meth:`BroadcastStore.reserve_slots`."""
    taken = pacing.c.next_slot
    base = case((and_(taken > start, taken < start + MAX_AHEAD), taken), else_=start)
    stmt = (
        update(pacing)
        .where(pacing.c.id == PACING_ROW)
        .values(next_slot=base + count * spacing)
        .returning(pacing.c.next_slot)
    )
    end = conn.execute(stmt).scalar()
    if end is None:
        _pacing_row(conn)
        end = conn.execute(stmt).scalar_one()
    return float(end) - count * spacing


def _open_send(conn: Connection, limit: int, extra: int, timeout: float) -> Grant:
    """See :meth:`BroadcastStore.open_send`."""
    # Grants take turns, so each sees the sends granted before it (READ COMMITTED reads
    # what was committed before the statement), and their times are in grant order.
    conn.execute(select(func.pg_advisory_xact_lock(*SEND_LOCK)))
    clock = select(func.clock_timestamp().label("now")).cte("clock")  # evaluated once
    now = select(clock.c.now).scalar_subquery()
    until = sends.c.occupies_until
    busy = (
        select(func.count().label("n"), func.min(until).label("first"))
        .where(until > now)
        .cte("busy")
    )
    counted = clock.join(busy, true())
    granted = (
        insert(sends)
        .from_select(
            ["started", "occupies_until"],
            select(clock.c.now, clock.c.now + literal(dt.timedelta(seconds=timeout)))
            .select_from(counted)
            .where(busy.c.n + extra < limit),
        )
        .returning(sends.c.id)
        .cte("granted")
    )
    gone = delete(sends).where(until <= now).cte("gone")  # what no longer counts
    row = conn.execute(
        select(
            clock.c.now,
            busy.c.first,
            select(granted.c.id).scalar_subquery().label("ticket"),
        )
        .select_from(counted)
        .add_cte(gone)
    ).one()
    if row.ticket is not None:
        return Grant(int(row.ticket))
    # A send in flight frees its place a second after it completes, so not within a second.
    free = row.now + dt.timedelta(seconds=AFTER)
    if row.first is not None:
        free = min(free, row.first)
    return Grant(None, (free - row.now).total_seconds())


def _close_sends(conn: Connection, completed: list[tuple[int, float]]) -> None:
    """Close sends that completed at the given ``time.monotonic()`` (see ``close_send``):
    measured back from the database's clock now, which errs late, never early."""
    now = time.monotonic()
    conn.execute(
        update(sends)
        .where(sends.c.id == bindparam("ticket"))
        .values(occupies_until=func.clock_timestamp() + bindparam("after", type_=Interval)),
        [
            {"ticket": ticket, "after": dt.timedelta(seconds=AFTER - (now - done))}
            for ticket, done in completed
        ],
    )


def _take_sender(conn: Connection, owner: str, now: dt.datetime, until: dt.datetime) -> bool:
    """SQLite: make ``owner`` the one sending worker, unless another holds a live lease.

    This write is a claim's first statement, so the claim runs under SQLite's write lock
    from its start: claims of processes sharing the file take turns."""
    stmt = (
        update(pacing)
        .where(
            pacing.c.id == PACING_ROW,
            or_(pacing.c.sender.is_(None), pacing.c.sender == owner, pacing.c.sender_until < now),
        )
        .values(sender=owner, sender_until=until)
    )
    if conn.execute(stmt).rowcount:
        return True
    _pacing_row(conn)
    return bool(conn.execute(stmt).rowcount)


def _claim(
    conn: Connection, claimable: Any, limit: int, recent: dt.datetime, taken: list[Claimed]
) -> list[Claimed]:
    """Up to ``limit`` rows matching ``claimable`` whose chat is free (see ``claim_next``)."""
    other = deliveries.alias("other")
    busy = exists().where(
        other.c.chat_id == deliveries.c.chat_id,
        other.c.broadcast_id != deliveries.c.broadcast_id,
        or_(
            other.c.status == "inflight",
            and_(other.c.status != "pending", other.c.updated_at > recent),
        ),
    )
    candidates = (
        select(
            deliveries.c.broadcast_id,
            deliveries.c.chat_id,
            deliveries.c.parts_sent,
            broadcast_texts.c.text,
            broadcasts.c.status.label("broadcast_status"),
        )
        .join(broadcasts, broadcasts.c.id == deliveries.c.broadcast_id)
        .join(
            broadcast_texts,
            and_(
                broadcast_texts.c.broadcast_id == deliveries.c.broadcast_id,
                broadcast_texts.c.language == deliveries.c.language,
            ),
        )
        .where(claimable, broadcasts.c.status.in_(ACTIVE_BROADCAST), ~busy)
        .order_by(deliveries.c.broadcast_id, deliveries.c.chat_id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(of=deliveries, skip_locked=True)
    chats = {item.chat_id for item in taken}
    claimed: list[Claimed] = []
    for row in conn.execute(candidates).all():
        if row.chat_id in chats:  # two broadcasts' rows of one chat: the older goes first
            continue
        chats.add(row.chat_id)
        claimed.append(
            Claimed(int(row.broadcast_id), int(row.chat_id), row.text, int(row.parts_sent))
        )
        if row.broadcast_status == "queued":
            conn.execute(
                update(broadcasts)
                .where(broadcasts.c.id == row.broadcast_id, broadcasts.c.status == "queued")
                .values(status="sending")
            )
    return claimed


class BroadcastStore:
    """Broadcast bookkeeping on an existing :class:`~bot.storage.Store` (same engine, pool)."""

    def __init__(self, store: Store, clock: Callable[[], dt.datetime] = _now) -> None:
        self.store = store
        self._clock = clock
        # Sends completed and not closed yet: (ticket, time.monotonic() at completion).
        self._completed: list[tuple[int, float]] = []

    async def init(self) -> None:
        """Migrate the database (the broadcast tables are in the migrations with the rest)."""
        await self.store.init()

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, chat_id: int, region: str, language: str) -> None:
        """Subscribe (or re-subscribe, or move to another region / language)."""
        now = self._clock()

        def work(conn: Connection) -> None:
            stmt = _upsert(conn, subscriptions).values(
                chat_id=chat_id,
                region=region,
                language=language,
                active=True,
                subscribed_at=now,
                updated_at=now,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[subscriptions.c.chat_id],
                set_={
                    "region": region,
                    "language": language,
                    "active": True,
                    "subscribed_at": case(
                        (subscriptions.c.active.is_(False), now),
                        else_=subscriptions.c.subscribed_at,
                    ),
                    "updated_at": now,
                },
            )
            conn.execute(stmt)

        await self.store._run(work, commit=True)

    async def unsubscribe(self, chat_id: int) -> str | None:
        """End the chat's subscription; the region it was for, None when there was none."""
        deactivate = self._deactivate(chat_id)

        def work(conn: Connection) -> str | None:
            region = conn.execute(
                select(subscriptions.c.region).where(
                    subscriptions.c.chat_id == chat_id, subscriptions.c.active.is_(True)
                )
            ).scalar()
            deactivate(conn)
            return None if region is None else str(region)

        return await self.store._run(work, commit=True)

    async def set_language(self, chat_id: int, language: str) -> None:
        """The chat chose another language: its announcements follow (no-op if unsubscribed)."""
        now = self._clock()

        def work(conn: Connection) -> None:
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.chat_id == chat_id)
                .values(language=language, updated_at=now)
            )

        await self.store._run(work, commit=True)

    def _deactivate(self, chat_id: int) -> Callable[[Connection], bool]:
        now = self._clock()

        def work(conn: Connection) -> bool:
            result = conn.execute(
                update(subscriptions)
                .where(subscriptions.c.chat_id == chat_id, subscriptions.c.active.is_(True))
                .values(active=False, updated_at=now)
            )
            return bool(result.rowcount)

        return work

    async def subscribers(self, region: str) -> list[Subscriber]:
        def work(conn: Connection) -> list[Subscriber]:
            rows = conn.execute(
                select(subscriptions.c.chat_id, subscriptions.c.region, subscriptions.c.language)
                .where(subscriptions.c.region == region, subscriptions.c.active.is_(True))
                .order_by(subscriptions.c.chat_id)
            )
            return [Subscriber(r.chat_id, r.region, r.language) for r in rows]

        return await self.store._run(work, commit=False)

    async def subscription(self, chat_id: int) -> tuple[Subscriber, bool] | None:
        """The chat's subscription and whether it is active."""

        def work(conn: Connection) -> tuple[Subscriber, bool] | None:
            row = conn.execute(
                select(subscriptions).where(subscriptions.c.chat_id == chat_id)
            ).first()
            if row is None:
                return None
            return Subscriber(row.chat_id, row.region, row.language), bool(row.active)

        return await self.store._run(work, commit=False)

    # ------------------------------------------------------------------ broadcasts

    async def queue_broadcast(
        self,
        template: str,
        region: str,
        created_by: int,
        texts: Texts,
        *,
        request_key: str | None = None,
        notify_chat: int | None = None,
        notify_language: str | None = None,
    ) -> int:
        """Queue a broadcast to every active subscriber of ``region``; returns its id.

        ``texts`` gives the text for each recipient language (a callable is called once per
        language present, in the database transaction, so it must be synchronous). The
        broadcast, its texts, one ``pending`` row per recipient and the audit record are
        written in one transaction: either all of it is queued or nothing is. With a
        ``request_key`` already used, nothing is queued and the first broadcast's id returned.
        """
        now = self._clock()
        render = texts if callable(texts) else texts.__getitem__

        def work(conn: Connection) -> int:
            if request_key is not None:
                found = conn.execute(
                    select(broadcasts.c.id).where(broadcasts.c.request_key == request_key)
                ).scalar()
                if found is not None:
                    return int(found)
            result = conn.execute(
                insert(broadcasts).values(
                    template=template,
                    region=region,
                    created_by=created_by,
                    created_at=now,
                    status="queued",
                    total=0,
                    request_key=request_key,
                    notify_chat=notify_chat,
                    notify_language=notify_language,
                )
            )
            (broadcast_id,) = result.inserted_primary_key or (None,)
            assert isinstance(broadcast_id, int)
            audience = and_(subscriptions.c.region == region, subscriptions.c.active.is_(True))
            languages = conn.execute(
                select(subscriptions.c.language).where(audience).distinct()
            ).scalars()
            rows = [
                {"broadcast_id": broadcast_id, "language": lang, "text": render(lang)}
                for lang in sorted(languages)
            ]
            if rows:
                conn.execute(insert(broadcast_texts), rows)
            chosen = select(
                literal(broadcast_id, Integer),
                subscriptions.c.chat_id,
                subscriptions.c.language,
                literal("pending", Text),
                literal(0, Integer),
                literal(0, Integer),
                literal(now, DateTime(timezone=True)),
            ).where(audience)
            copied = conn.execute(
                insert(deliveries).from_select(
                    [
                        "broadcast_id",
                        "chat_id",
                        "language",
                        "status",
                        "attempts",
                        "parts_sent",
                        "updated_at",
                    ],
                    chosen,
                )
            )
            total = int(copied.rowcount or 0)
            conn.execute(
                update(broadcasts)
                .where(broadcasts.c.id == broadcast_id)
                .values(total=total, status="queued" if total else "done")
            )
            conn.execute(
                insert(audit).values(
                    at=now,
                    actor=created_by,
                    action="broadcast",
                    broadcast_id=broadcast_id,
                    detail=f"template={template} region={region} recipients={total}",
                )
            )
            return broadcast_id

        try:
            return await self.store._run(work, commit=True)
        except IntegrityError:
            if request_key is None:
                raise
            # The same request queued concurrently won the unique key: return its broadcast.
            return await self.store._run(work, commit=True)

    async def audience(self, region: str) -> dict[str, int]:
        """Active subscribers of ``region`` per language."""

        def work(conn: Connection) -> dict[str, int]:
            rows = conn.execute(
                select(subscriptions.c.language, func.count().label("n"))
                .where(subscriptions.c.region == region, subscriptions.c.active.is_(True))
                .group_by(subscriptions.c.language)
            )
            return {row.language: int(row.n) for row in rows}

        return await self.store._run(work, commit=False)

    async def texts(self, broadcast_id: int) -> dict[str, str]:
        """The broadcast's text per recipient language, as queued."""

        def work(conn: Connection) -> dict[str, str]:
            rows = conn.execute(
                select(broadcast_texts.c.language, broadcast_texts.c.text).where(
                    broadcast_texts.c.broadcast_id == broadcast_id
                )
            )
            return {row.language: row.text for row in rows}

        return await self.store._run(work, commit=False)

    async def queued(self, request_key: str) -> bool:
        """Whether a broadcast with this request key exists (e.g. a reminder already sent)."""

        def work(conn: Connection) -> bool:
            stmt = select(broadcasts.c.id).where(broadcasts.c.request_key == request_key)
            return conn.execute(stmt).first() is not None

        return await self.store._run(work, commit=False)

    async def cancel(self, broadcast_id: int, actor: int) -> bool:
        """Stop a queued or running broadcast (rows in flight still finish); audited."""
        now = self._clock()

        def work(conn: Connection) -> bool:
            result = conn.execute(
                update(broadcasts)
                .where(broadcasts.c.id == broadcast_id, broadcasts.c.status.in_(ACTIVE_BROADCAST))
                .values(status="cancelled")
            )
            done = bool(result.rowcount)
            conn.execute(
                insert(audit).values(
                    at=now,
                    actor=actor,
                    action="cancel",
                    broadcast_id=broadcast_id,
                    detail="cancelled" if done else "not running",
                )
            )
            return done

        return await self.store._run(work, commit=True)

    async def record_audit(
        self, actor: int, action: str, detail: str = "", broadcast_id: int | None = None
    ) -> None:
        """An audit record, e.g. a refused /broadcast from someone not on the staff list."""
        now = self._clock()

        def work(conn: Connection) -> None:
            conn.execute(
                insert(audit).values(
                    at=now, actor=actor, action=action, broadcast_id=broadcast_id, detail=detail
                )
            )

        await self.store._run(work, commit=True)

    async def audit_log(self, broadcast_id: int | None = None) -> list[dict[str, Any]]:
        def work(conn: Connection) -> list[dict[str, Any]]:
            stmt = select(audit).order_by(audit.c.id)
            if broadcast_id is not None:
                stmt = stmt.where(audit.c.broadcast_id == broadcast_id)
            return [dict(row._mapping) for row in conn.execute(stmt)]

        return await self.store._run(work, commit=False)

    async def progress(self, broadcast_id: int) -> Progress | None:
        found = await self.store._run(_progress([broadcast_id]), commit=False)
        return found[0] if found else None

    async def recent(self, limit: int = 5) -> list[Progress]:
        """The latest broadcasts, newest first."""

        def work(conn: Connection) -> list[Progress]:
            stmt = select(broadcasts.c.id).order_by(broadcasts.c.id.desc()).limit(limit)
            ids = [int(i) for i in conn.execute(stmt).scalars()]
            return _progress(ids)(conn)

        return await self.store._run(work, commit=False)

    async def unfinished(self) -> int:
        """Deliveries not finished yet, of every broadcast and process."""

        def work(conn: Connection) -> int:
            stmt = select(func.count()).where(deliveries.c.status.in_(UNFINISHED))
            return int(conn.execute(stmt).scalar_one())

        return await self.store._run(work, commit=False)

    # ------------------------------------------------------------------ delivery

    async def claim_next(
        self,
        batch: int = 1,
        *,
        owner: str = "",
        lease: float = 30.0,
        interval: float = 0.0,
        expired: bool = True,
        slots: tuple[float, float] | None = None,
    ) -> list[Claimed]:
        """Up to ``batch`` recipients of running broadcasts, oldest broadcast first, marked
        ``inflight`` under a lease of ``lease`` seconds held by ``owner`` and committed before
        this returns (before anything is sent).

        Rows left ``inflight`` by a worker whose lease ran out (or by the code before
        leases) are taken first when ``expired``, then ``pending`` ones. A chat is skipped
        while another broadcast's message to it is in flight or was sent less than
        ``interval`` seconds ago. Claims take turns (see the module doc), so two workers
        never hold one recipient. On SQLite nothing is claimed unless ``owner`` holds the
        sender lease. With ``slots`` (start, spacing) a send slot is reserved for each
        recipient in the same transaction, as :meth:`reserve_slots` would.
        """
        now = self._clock()
        until = now + dt.timedelta(seconds=lease)
        recent = now - dt.timedelta(seconds=interval)

        def work(conn: Connection) -> list[Claimed]:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(*CLAIM_LOCK)))
            elif not _take_sender(conn, owner, now, until):
                return []
            kinds = [deliveries.c.status == "pending"]
            if expired:
                ended = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
                kinds.insert(0, and_(deliveries.c.status == "inflight", ended))
            claimed: list[Claimed] = []
            for claimable in kinds:
                if len(claimed) < batch:
                    claimed += _claim(conn, claimable, batch - len(claimed), recent, claimed)
            if claimed:
                keys = [(item.broadcast_id, item.chat_id) for item in claimed]
                conn.execute(
                    update(deliveries)
                    .where(tuple_(deliveries.c.broadcast_id, deliveries.c.chat_id).in_(keys))
                    .values(status="inflight", lease_owner=owner, lease_until=until, updated_at=now)
                )
            if claimed and slots is not None:
                start, spacing = slots
                first = _reserve(conn, start, len(claimed), spacing)
                claimed = [
                    dataclasses.replace(item, slot=first + i * spacing)
                    for i, item in enumerate(claimed)
                ]
            return claimed

        return await self._write(work)

    async def renew(self, owner: str, lease: float) -> None:
        """Extend the leases ``owner`` holds (its rows in flight; on SQLite the sender lease)
        to ``lease`` seconds from now."""
        now = self._clock()
        until = now + dt.timedelta(seconds=lease)

        def work(conn: Connection) -> None:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.status == "inflight", deliveries.c.lease_owner == owner)
                .values(lease_until=until)
            )
            if conn.dialect.name != "postgresql":
                conn.execute(
                    update(pacing)
                    .where(pacing.c.id == PACING_ROW, pacing.c.sender == owner)
                    .values(sender_until=until)
                )

        await self._write(work)

    async def release(self, owner: str) -> int:
        """A worker stopping: the rows it claimed and did not send go back to ``pending`` at
        once (and on SQLite the sender lease to whoever asks next); returns how many."""
        now = self._clock()

        def work(conn: Connection) -> int:
            result = conn.execute(
                update(deliveries)
                .where(deliveries.c.status == "inflight", deliveries.c.lease_owner == owner)
                .values(status="pending", lease_owner=None, lease_until=None, updated_at=now)
            )
            conn.execute(
                update(pacing)
                .where(pacing.c.id == PACING_ROW, pacing.c.sender == owner)
                .values(sender=None, sender_until=None)
            )
            return int(result.rowcount or 0)

        return await self._write(work)

    async def waiting(self, owner: str) -> float | None:
        """Whether recipients of running broadcasts are left that ``owner`` may have to send
        later: ``pending`` ones (their chat may be inside its interval) or ones another worker
        holds (its lease may run out). None when there are none, else the seconds until they
        may come free: 0 (soon), or on SQLite what is left of another worker's sender lease.
        """
        now = self._clock()

        def work(conn: Connection) -> float | None:
            left = exists().where(
                deliveries.c.broadcast_id == broadcasts.c.id,
                broadcasts.c.status.in_(ACTIVE_BROADCAST),
                or_(
                    deliveries.c.status == "pending",
                    and_(
                        deliveries.c.status == "inflight",
                        or_(deliveries.c.lease_owner.is_(None), deliveries.c.lease_owner != owner),
                    ),
                ),
            )
            if not conn.execute(select(left)).scalar():
                return None
            if conn.dialect.name == "postgresql":
                return 0.0
            sender = conn.execute(
                select(pacing.c.sender, pacing.c.sender_until).where(pacing.c.id == PACING_ROW)
            ).first()
            if sender is None or sender.sender in (None, owner):
                return 0.0
            return max((_aware(sender.sender_until) - now).total_seconds(), 0.0)

        return await self.store._run(work, commit=False)

    async def reserve_slots(self, start: float, count: int, spacing: float) -> float:
        """Reserve ``count`` send slots ``spacing`` seconds apart on the overall schedule every
        process shares, the first at ``start`` (seconds since the epoch) or after the slots
        already reserved; returns the first."""
        return await self.store._run(
            lambda conn: _reserve(conn, start, count, spacing), commit=True
        )

    async def open_send(self, limit: int, extra: int, timeout: float) -> Grant:
        """PostgreSQL: grant a broadcast send if fewer than ``limit - extra`` sends of every
        process occupy the overall limit (see :mod:`bot.send_window`): in flight (for at
        most ``timeout`` seconds from their grant) or completed less than a second ago.
        ``extra``: the caller's own sends counted beside (its replies). Times are the
        database's clock; rows that no longer count are deleted."""
        return await self._write(lambda conn: _open_send(conn, limit, extra, timeout))

    async def close_send(self, ticket: int) -> None:
        """The send granted as ``ticket`` completed now: it counts one second more.

        Written with this store's next transaction (the delivery's outcome follows every
        send), so it costs no round trip of its own; its time is that transaction's
        database clock less the time since the completion, measured here. Until then the
        other processes count it as in flight, which it was less than a second ago."""
        self._completed.append((ticket, time.monotonic()))

    async def _write(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a transaction that also closes the sends completed since the last
        one (PostgreSQL); if it fails they are closed with the next one."""
        completed, self._completed = self._completed, []

        def both(conn: Connection) -> T:
            done = work(conn)
            if completed:  # last: a grant's lock is never awaited while rows are locked
                _close_sends(conn, completed)
            return done

        try:
            return await self.store._run(both, commit=True)
        except BaseException:
            self._completed[:0] = completed
            raise

    @property
    def shares_the_rate(self) -> bool:
        """Whether several processes send at once, so that the overall limit is kept in the
        database (PostgreSQL); on SQLite the one sending process paces alone."""
        return self.store.engine.dialect.name == "postgresql"

    def now(self) -> dt.datetime:
        """The time leases are reckoned in (this store's clock)."""
        return self._clock()

    async def mark_sent(self, broadcast_id: int, chat_id: int, attempts: int = 1) -> bool:
        """Record a delivered message; True when that finished the broadcast."""
        return await self._finish(broadcast_id, chat_id, "sent", attempts, None)

    async def mark_part(self, broadcast_id: int, chat_id: int, parts_sent: int) -> None:
        """The first ``parts_sent`` parts of a long text reached the recipient."""
        now = self._clock()

        def work(conn: Connection) -> None:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.broadcast_id == broadcast_id, deliveries.c.chat_id == chat_id)
                .values(parts_sent=parts_sent, updated_at=now)
            )

        await self._write(work)

    async def mark_failed(
        self, broadcast_id: int, chat_id: int, error: str, attempts: int = 1
    ) -> bool:
        """Record a recipient given up on; ``error`` is a short code such as a class name."""
        return await self._finish(broadcast_id, chat_id, "failed", attempts, error[:64])

    async def mark_unsubscribed(
        self, broadcast_id: int, chat_id: int, attempts: int = 1, error: str = "Forbidden"
    ) -> bool:
        """The recipient blocked the bot: record it and end the subscription."""
        return await self._finish(broadcast_id, chat_id, "unsubscribed", attempts, error[:64])

    async def _finish(
        self, broadcast_id: int, chat_id: int, status: str, attempts: int, error: str | None
    ) -> bool:
        now = self._clock()
        deactivate = self._deactivate(chat_id) if status == "unsubscribed" else None

        def work(conn: Connection) -> bool:
            conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.broadcast_id == broadcast_id,
                    deliveries.c.chat_id == chat_id,
                    deliveries.c.status.in_(UNFINISHED),
                )
                .values(
                    status=status,
                    attempts=deliveries.c.attempts + attempts,
                    last_error=error,
                    updated_at=now,
                )
            )
            if deactivate is not None:
                deactivate(conn)
            if conn.dialect.name == "postgresql":
                # Workers finishing the last rows at once take turns here, so the last one
                # sees the others' rows finished and marks the broadcast done.
                conn.execute(
                    select(broadcasts.c.id).where(broadcasts.c.id == broadcast_id).with_for_update()
                )
            unfinished = exists().where(
                deliveries.c.broadcast_id == broadcast_id, deliveries.c.status.in_(UNFINISHED)
            )
            result = conn.execute(
                update(broadcasts)
                .where(
                    broadcasts.c.id == broadcast_id,
                    broadcasts.c.status.in_(ACTIVE_BROADCAST),
                    ~unfinished,
                )
                .values(status="done")
            )
            return bool(result.rowcount)

        return await self._write(work)

    # ------------------------------------------------------------------ scheduled reminders

    async def reminder_settings(self) -> dict[str, bool]:
        """``region → enabled`` for the regions staff have switched (others are off)."""

        def work(conn: Connection) -> dict[str, bool]:
            rows = conn.execute(select(reminder_settings.c.region, reminder_settings.c.enabled))
            return {row.region: bool(row.enabled) for row in rows}

        return await self.store._run(work, commit=False)

    async def set_reminders(self, region: str, enabled: bool, actor: int) -> None:
        """Switch a region's scheduled reminders on or off; audited."""
        now = self._clock()

        def work(conn: Connection) -> None:
            values = {"enabled": enabled, "changed_by": actor, "changed_at": now}
            stmt = _upsert(conn, reminder_settings).values(region=region, **values)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=[reminder_settings.c.region], set_=values)
            )
            conn.execute(
                insert(audit).values(
                    at=now,
                    actor=actor,
                    action="reminders",
                    detail=f"region={region} enabled={enabled}",
                )
            )

        await self.store._run(work, commit=True)

    async def delivery_status(self, broadcast_id: int) -> dict[int, tuple[str, int, str | None]]:
        """``chat_id → (status, attempts, last_error)`` for every recipient of a broadcast."""

        def work(conn: Connection) -> dict[int, tuple[str, int, str | None]]:
            rows = conn.execute(
                select(
                    deliveries.c.chat_id,
                    deliveries.c.status,
                    deliveries.c.attempts,
                    deliveries.c.last_error,
                ).where(deliveries.c.broadcast_id == broadcast_id)
            )
            return {int(r.chat_id): (r.status, int(r.attempts), r.last_error) for r in rows}

        return await self.store._run(work, commit=False)

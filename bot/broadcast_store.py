"""Subscriptions, broadcasts and one durable status row per recipient (SQLAlchemy Core).

The tables live on :data:`bot.storage.metadata`, so ``Store.init()`` creates them once this
module is imported (:meth:`BroadcastStore.init` does it too). Every function runs one short
transaction through :meth:`bot.storage.Store._run`, on SQLite and PostgreSQL alike.

A delivery row moves ``pending`` → ``inflight`` → ``sent`` | ``failed`` | ``unsubscribed``.
The claim (``pending`` → ``inflight``) is committed *before* the message is sent and the
outcome is committed right after, so after a crash only the rows left ``inflight`` are in
doubt: :meth:`BroadcastStore.recover` puts them back to ``pending`` and they are sent again.
Those are the only sends that can repeat (Telegram has no idempotency key).

Texts are stored once per broadcast and language (``broadcast_texts``); each delivery row
records the recipient's language, so a resumed broadcast sends exactly what was previewed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.storage import Store, metadata

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
    Column("last_error", Text),  # an exception class name, never message text or user data
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_deliveries_status", "status", "broadcast_id", "chat_id"),
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

TABLES = (subscriptions, broadcasts, broadcast_texts, deliveries, audit)
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


@dataclass(frozen=True, slots=True)
class Progress:
    broadcast_id: int
    status: str  # the broadcast's: queued | sending | done | cancelled
    total: int
    pending: int = 0
    inflight: int = 0
    sent: int = 0
    failed: int = 0
    unsubscribed: int = 0

    @property
    def remaining(self) -> int:
        return self.pending + self.inflight


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BroadcastStore:
    """Broadcast bookkeeping on an existing :class:`~bot.storage.Store` (same engine, pool)."""

    def __init__(self, store: Store, clock: Callable[[], dt.datetime] = _now) -> None:
        self.store = store
        self._clock = clock

    async def init(self) -> None:
        """Create the broadcast tables (``Store.init()`` does as well once this is imported)."""

        def work(conn: Connection) -> None:
            metadata.create_all(conn, tables=list(TABLES))

        await self.store._run(work, commit=True)

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, chat_id: int, region: str, language: str) -> None:
        """Subscribe (or re-subscribe, or move to another region / language)."""
        now = self._clock()

        def work(conn: Connection) -> None:
            dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(subscriptions).values(
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

    async def unsubscribe(self, chat_id: int) -> bool:
        """False when the chat was not subscribed."""
        return await self.store._run(self._deactivate(chat_id), commit=True)

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
        self, template: str, region: str, created_by: int, texts: Texts
    ) -> int:
        """Queue a broadcast to every active subscriber of ``region``; returns its id.

        ``texts`` gives the text for each recipient language (a callable is called once per
        language present, in the database transaction, so it must be synchronous). The
        broadcast, its texts, one ``pending`` row per recipient and the audit record are
        written in one transaction: either all of it is queued or nothing is.
        """
        now = self._clock()
        render = texts if callable(texts) else texts.__getitem__

        def work(conn: Connection) -> int:
            result = conn.execute(
                insert(broadcasts).values(
                    template=template,
                    region=region,
                    created_by=created_by,
                    created_at=now,
                    status="queued",
                    total=0,
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
                literal(now, DateTime(timezone=True)),
            ).where(audience)
            copied = conn.execute(
                insert(deliveries).from_select(
                    ["broadcast_id", "chat_id", "language", "status", "attempts", "updated_at"],
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

        return await self.store._run(work, commit=True)

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
        def work(conn: Connection) -> Progress | None:
            head = conn.execute(
                select(broadcasts.c.status, broadcasts.c.total).where(
                    broadcasts.c.id == broadcast_id
                )
            ).first()
            if head is None:
                return None
            counts = {
                row.status: int(row.n)
                for row in conn.execute(
                    select(deliveries.c.status, func.count().label("n"))
                    .where(deliveries.c.broadcast_id == broadcast_id)
                    .group_by(deliveries.c.status)
                )
            }
            return Progress(broadcast_id, head.status, int(head.total), **counts)

        return await self.store._run(work, commit=False)

    async def broadcasts_in_progress(self) -> list[int]:
        def work(conn: Connection) -> list[int]:
            stmt = (
                select(broadcasts.c.id)
                .where(broadcasts.c.status.in_(ACTIVE_BROADCAST))
                .order_by(broadcasts.c.id)
            )
            return [int(i) for i in conn.execute(stmt).scalars()]

        return await self.store._run(work, commit=False)

    # ------------------------------------------------------------------ delivery

    async def claim_next(self, batch: int = 1) -> list[Claimed]:
        """Up to ``batch`` pending recipients of running broadcasts, oldest broadcast first,
        marked ``inflight`` and committed before this returns (before anything is sent).

        A row is only taken if it is still ``pending`` when updated, so two workers never
        claim the same recipient.
        """
        now = self._clock()

        def work(conn: Connection) -> list[Claimed]:
            candidates = (
                select(deliveries.c.broadcast_id, deliveries.c.chat_id, broadcast_texts.c.text)
                .join(broadcasts, broadcasts.c.id == deliveries.c.broadcast_id)
                .join(
                    broadcast_texts,
                    and_(
                        broadcast_texts.c.broadcast_id == deliveries.c.broadcast_id,
                        broadcast_texts.c.language == deliveries.c.language,
                    ),
                )
                .where(
                    deliveries.c.status == "pending",
                    broadcasts.c.status.in_(ACTIVE_BROADCAST),
                )
                .order_by(deliveries.c.broadcast_id, deliveries.c.chat_id)
                .limit(batch)
            )
            if conn.dialect.name == "postgresql":
                candidates = candidates.with_for_update(of=deliveries, skip_locked=True)
            claimed: list[Claimed] = []
            for row in conn.execute(candidates).all():
                taken = conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.broadcast_id == row.broadcast_id,
                        deliveries.c.chat_id == row.chat_id,
                        deliveries.c.status == "pending",
                    )
                    .values(status="inflight", updated_at=now)
                )
                if taken.rowcount == 1:
                    claimed.append(Claimed(int(row.broadcast_id), int(row.chat_id), row.text))
            for broadcast_id in {c.broadcast_id for c in claimed}:
                conn.execute(
                    update(broadcasts)
                    .where(broadcasts.c.id == broadcast_id, broadcasts.c.status == "queued")
                    .values(status="sending")
                )
            return claimed

        return await self.store._run(work, commit=True)

    async def mark_sent(self, broadcast_id: int, chat_id: int, attempts: int = 1) -> bool:
        """Record a delivered message; True when that finished the broadcast."""
        return await self._finish(broadcast_id, chat_id, "sent", attempts, None)

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

        return await self.store._run(work, commit=True)

    async def recover(self) -> int:
        """At start-up: put rows left ``inflight`` by a crash back to ``pending``.

        Their sends may or may not have reached Telegram; they are sent again, which makes
        them the only messages that can arrive twice. Returns how many there were. Call it
        only while no worker is running (one delivery worker per database).
        """
        now = self._clock()

        def work(conn: Connection) -> int:
            result = conn.execute(
                update(deliveries)
                .where(deliveries.c.status == "inflight")
                .values(status="pending", updated_at=now)
            )
            return int(result.rowcount or 0)

        return await self.store._run(work, commit=True)

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

"""The tables as they were before migrations: conversations and outbox (bot.storage), the
broadcast tables (bot.broadcast_store).

A database made by the former ``create_all`` already has some or all of them: only the
missing ones are created, so such a database is taken over as it is.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite's rowid autoincrements
WHEN = sa.DateTime(timezone=True)


def _conversations() -> None:
    op.create_table(
        "conversations",
        sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )


def _outbox() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", ID, primary_key=True),
        sa.Column("chat_id", sa.BigInteger, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
    )
    op.create_index("ix_outbox_chat_id", "outbox", ["chat_id"])


def _subscriptions() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("subscribed_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_index("ix_subscriptions_region_active", "subscriptions", ["region", "active"])


def _broadcasts() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("template", sa.Text, nullable=False),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("created_by", sa.BigInteger, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("request_key", sa.Text, unique=True),
        sa.Column("notify_chat", sa.BigInteger),
        sa.Column("notify_language", sa.Text),
    )


def _broadcast_texts() -> None:
    op.create_table(
        "broadcast_texts",
        sa.Column(
            "broadcast_id",
            sa.Integer,
            sa.ForeignKey("broadcasts.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("language", sa.Text, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
    )


def _deliveries() -> None:
    op.create_table(
        "deliveries",
        sa.Column(
            "broadcast_id",
            sa.Integer,
            sa.ForeignKey("broadcasts.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("parts_sent", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_index("ix_deliveries_status", "deliveries", ["status", "broadcast_id", "chat_id"])


def _audit() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("actor", sa.BigInteger, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("broadcast_id", sa.Integer),
        sa.Column("detail", sa.Text, nullable=False),
    )


def _reminder_settings() -> None:
    op.create_table(
        "reminder_settings",
        sa.Column("region", sa.Text, primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("changed_by", sa.BigInteger, nullable=False),
        sa.Column("changed_at", WHEN, nullable=False),
    )


# In this order: broadcast_texts and deliveries refer to broadcasts.
TABLES: dict[str, Callable[[], None]] = {
    "conversations": _conversations,
    "outbox": _outbox,
    "subscriptions": _subscriptions,
    "broadcasts": _broadcasts,
    "broadcast_texts": _broadcast_texts,
    "deliveries": _deliveries,
    "audit": _audit,
    "reminder_settings": _reminder_settings,
}


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)

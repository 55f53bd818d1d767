"""Broadcast delivery shared by every process: a claim is a lease (who holds the row and
until when), a chat's deliveries are found by chat (the per-chat interval across
processes), and one row of shared pacing (the overall rate's next free send slot, and on
SQLite the one process allowed to send).

Like 0001, only what is missing is added, so a database made by ``create_all`` from the
current tables is taken over as it is. Rows are kept: the new columns are empty until a
worker claims the row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    columns = {column["name"] for column in inspector.get_columns("deliveries")}
    if "lease_owner" not in columns:
        op.add_column("deliveries", sa.Column("lease_owner", sa.Text))
    if "lease_until" not in columns:
        op.add_column("deliveries", sa.Column("lease_until", WHEN))
    indexes = {index["name"] for index in inspector.get_indexes("deliveries")}
    if "ix_deliveries_chat_id" not in indexes:
        op.create_index("ix_deliveries_chat_id", "deliveries", ["chat_id"])
    if "broadcast_pacing" not in inspector.get_table_names():
        op.create_table(
            "broadcast_pacing",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("next_slot", sa.Float, nullable=False),
            sa.Column("sender", sa.Text),
            sa.Column("sender_until", WHEN),
        )


def downgrade() -> None:
    op.drop_table("broadcast_pacing")
    op.drop_index("ix_deliveries_chat_id", "deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")

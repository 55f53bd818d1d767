"""The broadcast sends that occupy the overall rate limit, shared by every process on
PostgreSQL (``broadcast_sends``, see ``bot.send_window``): a send counts from its grant
until its completion plus a second, so the limit holds where the messages arrive.

The table only holds the last seconds' sends; it starts empty. Like 0001 and 0002, only
what is missing is added.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    if "broadcast_sends" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "broadcast_sends",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("started", WHEN, nullable=False),
        sa.Column("occupies_until", WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("broadcast_sends")

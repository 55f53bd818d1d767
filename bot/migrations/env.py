"""Alembic's environment: migrations run on the connection :mod:`bot.migrate` hands over,
inside its transaction (and, on PostgreSQL, under its advisory lock)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    # The asyncpg URL needs the bot's event loop; bot.migrate brings one.
    raise SystemExit("run the migrations with `python -m bot migrate`")
context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()

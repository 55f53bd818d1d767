"""Alembic migrations of the bot's schema (run by ``python -m bot migrate``; see bot.migrate)."""

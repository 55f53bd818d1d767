"""Conversation state per chat, committed on every update (SQLAlchemy async).

Each row carries a version; a save only succeeds against the version it loaded, so two
processes handling the same chat never overwrite each other (the loser reloads and
handles the event again). Works with SQLite (aiosqlite) and PostgreSQL (asyncpg).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from conversations.state import State

metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("state", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and one writer in other processes proceed; wait instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


class Store:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    async def init(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    async def load(self, chat_id: int) -> tuple[State | None, int]:
        """The chat's state and its version (0 when there is none yet)."""
        query = select(conversations.c.state, conversations.c.version).where(
            conversations.c.chat_id == chat_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None, 0
        return State.model_validate_json(row.state), row.version

    async def save(self, chat_id: int, state: State, version: int) -> bool:
        """Store ``state`` if the row is still at ``version``; False when someone else won."""
        values = {
            "state": state.model_dump_json(),
            "version": version + 1,
            "updated_at": state.updated_at or dt.datetime.now(dt.UTC),
        }
        try:
            async with self.engine.begin() as conn:
                if version == 0:
                    await conn.execute(insert(conversations).values(chat_id=chat_id, **values))
                    return True
                result = await conn.execute(
                    update(conversations)
                    .where(conversations.c.chat_id == chat_id)
                    .where(conversations.c.version == version)
                    .values(**values)
                )
                return bool(result.rowcount == 1)
        except IntegrityError:
            return False

    async def purge(self, before: dt.datetime) -> int:
        """Delete conversations untouched since ``before``; they hold personal data."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(conversations).where(conversations.c.updated_at < before)
            )
        return int(result.rowcount or 0)

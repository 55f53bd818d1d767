"""Personal data at rest and in logs (issue 13): what a resident cleared leaves the SQLite
files, and no logger writes what a resident typed."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from telegram import Bot

from bot import redaction
from bot.service import ConversationService
from bot.storage import Store
from conversations.state import Command, Press, Text
from policies.loader import default_library

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
BIRTH = "1961-07-23"


def files_contain(folder: Path, needle: bytes) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_file() and needle in p.read_bytes()]


async def test_cancel_leaves_no_birth_date_in_the_sqlite_files(tmp_path: Path) -> None:
    """Issue 13, "after /cancel the data stays in the SQLite WAL": with secure_delete and a
    checkpoint after the deletion, neither the database nor its -wal file holds the date."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    await store.init()
    svc = ConversationService(store, default_library(), clock=lambda: NOW)
    await svc.process(7, Command("start"))
    await svc.process(7, Press("region:shangluo"))
    await svc.process(7, Text(BIRTH))
    assert files_contain(tmp_path, BIRTH.encode())  # it was stored
    await svc.process(7, Command("cancel"))
    assert files_contain(tmp_path, BIRTH.encode()) == []
    await store.close()


async def test_purge_leaves_no_birth_date_in_the_sqlite_files(tmp_path: Path) -> None:
    """Issue 13, the same for the retention purge (and replies left in the outbox)."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    await store.init()
    svc = ConversationService(store, default_library(), clock=lambda: NOW)
    await svc.receive(7, Command("start"), update_id=1)
    await svc.receive(7, Press("region:shangluo"), update_id=2)
    await svc.receive(7, Text(BIRTH), update_id=3)
    assert await store.purge(NOW + dt.timedelta(days=2)) == 1
    assert files_contain(tmp_path, BIRTH.encode()) == []
    await store.close()


def test_the_library_dump_of_an_unparseable_update_is_withheld(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 13, "python-telegram-bot logs the raw update JSON at CRITICAL": the filter on
    the handlers withholds the text and names, whichever logger the record comes from."""
    raw = [
        {
            "update_id": 5,
            "message": {"text": "我生于1961-07-23，低保户", "from": {"first_name": "王"}},
        }
    ]
    handler = caplog.handler
    handler.addFilter(redaction.WithholdMessageText())
    with caplog.at_level(logging.DEBUG):
        try:
            raise ValueError(f"bad update {raw!r}")
        except ValueError as exc:
            # Exactly python-telegram-bot's call in Bot.get_updates.
            Bot._LOGGER.critical(
                "Error while parsing updates! Received data was %r", raw, exc_info=exc
            )
    text = handler.stream.getvalue() if hasattr(handler, "stream") else ""
    output = caplog.text + text
    assert "Received data was" in output and "update_id" in output
    assert "1961" not in output and "低保户" not in output and "王" not in output

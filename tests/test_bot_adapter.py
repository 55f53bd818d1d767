"""The Telegram adapter's own pieces: error handling, settings, long messages."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from telegram import Chat, Message, Update, User

from bot.config import Settings
from bot.splitting import split_html
from bot.telegram_app import on_error


class FakeBot:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send_message(self, chat_id: int, text: str, **_: Any) -> None:
        self.sent.append((chat_id, text))


class FakeContext:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.bot = FakeBot()


def _update(text: str) -> Update:
    user = User(id=987654, first_name="张", is_bot=False)
    chat = Chat(id=987654, type="private")
    import datetime as dt

    msg = Message(message_id=1, date=dt.datetime.now(dt.UTC), chat=chat, from_user=user, text=text)
    return Update(update_id=5, message=msg)


async def test_error_handler_answers_kindly_and_logs_no_personal_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise ValueError("birth date 1980-05-01, 低保对象")
    except ValueError as exc:
        error = exc
    context = FakeContext(error)
    with caplog.at_level(logging.INFO):
        await on_error(_update("1980-05-01 我是低保户"), context)  # type: ignore[arg-type]
    assert context.bot.sent and "已填写的信息都还在" in context.bot.sent[0][1]
    logged = caplog.text
    assert "ValueError" in logged
    for secret in ("1980-05-01", "低保", "987654"):
        assert secret not in logged


async def test_polling_errors_are_logged_without_a_reply(caplog: pytest.LogCaptureFixture) -> None:
    context = FakeContext(ConnectionError("down"))
    with caplog.at_level(logging.INFO):
        await on_error(None, context)  # type: ignore[arg-type]
    assert context.bot.sent == [] and "ConnectionError" in caplog.text


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAFF_IDS", "101, 202,303")
    monkeypatch.setenv("BOT_TOKEN", "")
    monkeypatch.setenv("TELEGRAM_BASE_URL", "http://127.0.0.1:8081/bot")
    settings = Settings(_env_file=None)
    assert settings.staff_ids == frozenset({101, 202, 303})
    assert settings.bot_token is None
    assert settings.telegram_base_url == "http://127.0.0.1:8081/bot"
    assert settings.database_url.startswith("sqlite+aiosqlite:///")


def test_long_replies_are_split_at_line_breaks() -> None:
    html = "\n".join(f"<b>{i}</b> " + "字" * 50 for i in range(200))
    chunks = split_html(html, limit=1000)
    assert all(len(c) <= 1000 for c in chunks)
    assert "\n".join(chunks) == html


async def test_start_up_calls_are_made_again_after_a_network_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection dropped during start-up (setMyCommands) must not stop the bot."""
    from telegram.error import NetworkError

    from bot.telegram_app import _at_start

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr("bot.telegram_app.asyncio.sleep", no_wait)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise NetworkError("httpx.ReadError")
        return "ok"

    assert await _at_start(flaky) == "ok" and len(calls) == 3

    async def down() -> str:
        raise NetworkError("down")

    with pytest.raises(NetworkError):
        await _at_start(down)

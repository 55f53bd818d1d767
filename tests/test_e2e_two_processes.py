"""Issue 13, "per-chat order": two bot processes (real ``python -m bot``, webhook mode) on
one database get one chat's updates interleaved and out of order; none is lost.

Telegram may deliver a chat's updates to any process behind a webhook address; an update
that arrives after a newer one of the same chat must still be applied (before issue 13 it
was taken for a redelivery and dropped).
"""

from __future__ import annotations

import time

import pytest
from botapi_stub import JSONDict
from test_e2e_bot import BotProcess, Harness, free_port, post

CHAT = 6060


def text_update(update_id: int, text: str) -> JSONDict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": {
                "id": CHAT,
                "is_bot": False,
                "first_name": "Resident",
                "language_code": "zh-hans",
            },
            "chat": {"id": CHAT, "type": "private", "first_name": "Resident"},
            "date": int(time.time()),
            "text": text,
            **(
                {"entities": [{"type": "bot_command", "offset": 0, "length": len(text)}]}
                if text.startswith("/")
                else {}
            ),
        },
    }


SECRET = "two-processes-secret"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, harness: Harness) -> str:
    """The harness's SQLite file, or a new PostgreSQL database (migrated by the first bot)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{harness.db}"
    return str(request.getfixturevalue("postgres_db"))


def webhook_process(harness: Harness, database: str) -> tuple[BotProcess, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    bot = harness.launch(
        ready="setWebhook",
        WEBHOOK_URL=url,
        WEBHOOK_LISTEN="127.0.0.1",
        WEBHOOK_PORT=str(port),
        WEBHOOK_SECRET=SECRET,
        DATABASE_URL=database,
        AUTO_MIGRATE="true",
    )
    return bot, url


def test_two_processes_interleaved_and_out_of_order_lose_nothing(
    harness: Harness, database: str
) -> None:
    first, url_a = webhook_process(harness, database)
    second, url_b = webhook_process(harness, database)
    secret_a = secret_b = SECRET
    steps = [
        (url_a, secret_a, 1, "/start"),
        (url_b, secret_b, 2, "商洛"),
        (url_a, secret_a, 3, "1980-01-01"),
        # 5 reaches process B before 4 reaches process A: both are applied.
        (url_b, secret_b, 5, "低保"),
        (url_a, secret_a, 4, "特困"),
        (url_b, secret_b, 6, "2023-11-20"),
    ]
    for url, secret, update_id, text in steps:
        assert post(url, text_update(update_id, text), secret) == 200, (update_id, text)
    texts = [str(m["text"]) for m in harness.stub.sent_messages(CHAT)]
    # One reply per update (the quote may come in parts), nothing answered twice.
    assert sum("请选择您参保的地区" in t for t in texts) == 1
    assert any("✅ 特困人员" in t for t in texts), texts  # the late update 4 was applied
    # 商洛市 二（一）: 特困人员 are fully subsidised; with 低保 (二（二）, 190) the larger
    # applies (二: 就高), so nothing is due. Had update 4 been dropped, 190 would be.
    quote = texts[-1]
    assert "无需缴费" in quote and "现在需缴：" not in quote, quote
    assert first.alive() and second.alive()

"""Tests for the local Telegram Bot API stand-in, driven by real python-telegram-bot objects."""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from botapi_stub import BotApiStub
from PIL import Image
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    KeyboardButton,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, Forbidden, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

CHAT = 4242


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx honours HTTP(S)_PROXY/ALL_PROXY; a CI proxy must never see 127.0.0.1 traffic.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def stub() -> Iterator[BotApiStub]:
    with BotApiStub() as s:
        yield s


@pytest.fixture
async def bot(stub: BotApiStub) -> AsyncIterator[Bot]:
    async with Bot(stub.token, base_url=stub.base_url) as b:
        yield b


def _retry_seconds(exc: RetryAfter) -> float:
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


async def test_get_me_and_send_message(stub: BotApiStub, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot and me.username == "yibao_test_bot"

    markup = InlineKeyboardMarkup([[InlineKeyboardButton("是", callback_data="yes")]])
    first = await bot.send_message(CHAT, "你好", reply_markup=markup)
    second = await bot.send_message(CHAT, "42")  # numeric text must stay a string
    other = await bot.send_message(777, "hi")

    assert (first.message_id, second.message_id, other.message_id) == (1, 2, 1)
    assert first.chat.id == CHAT and first.chat.type == "private"
    assert first.text == "你好" and first.reply_markup == markup
    assert second.text == "42" and first.date is not None

    sent = stub.sent_messages(CHAT)
    assert [m["text"] for m in sent] == ["你好", "42"]
    assert sent[0]["chat_id"] == CHAT and sent[0]["message_id"] == 1
    assert sent[0]["reply_markup"] == {
        "inline_keyboard": [[{"text": "是", "callback_data": "yes"}]]
    }
    assert len(stub.sent_messages()) == 3
    assert stub.methods()[-3:] == ["sendMessage"] * 3


async def test_reply_keyboard_recorded_but_not_echoed(stub: BotApiStub, bot: Bot) -> None:
    keyboard = ReplyKeyboardMarkup([[KeyboardButton("菜单")]], resize_keyboard=True)
    msg = await bot.send_message(CHAT, "choose", reply_markup=keyboard)
    assert msg.reply_markup is None  # Telegram only echoes inline keyboards
    assert stub.sent_messages(CHAT)[0]["reply_markup"]["keyboard"] == [[{"text": "菜单"}]]


async def test_edit_message_text(stub: BotApiStub, bot: Bot) -> None:
    msg = await bot.send_message(CHAT, "v1")
    edited = await bot.edit_message_text("v2", chat_id=CHAT, message_id=msg.message_id)
    assert not isinstance(edited, bool)
    assert edited.message_id == msg.message_id and edited.text == "v2"
    with pytest.raises(BadRequest, match="not modified"):
        await bot.edit_message_text("v2", chat_id=CHAT, message_id=msg.message_id)
    with pytest.raises(BadRequest, match="not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=99)
    sent = stub.sent_messages(CHAT)
    assert [(m["method"], m["message_id"], m["text"]) for m in sent] == [
        ("sendMessage", 1, "v1"),
        ("editMessageText", 1, "v2"),
    ]


async def test_commands_and_true_methods(stub: BotApiStub, bot: Bot) -> None:
    commands = [BotCommand("start", "开始"), BotCommand("help", "帮助")]
    assert await bot.set_my_commands(commands, language_code="zh")
    assert await bot.get_my_commands(language_code="zh") == tuple(commands)
    assert await bot.get_my_commands() == ()
    assert await bot.delete_my_commands(language_code="zh")
    assert await bot.get_my_commands(language_code="zh") == ()
    assert await bot.delete_webhook()
    assert await bot.do_api_request("someFutureMethod", api_kwargs={"x": 1}) is True
    assert stub.unknown_methods == ["someFutureMethod"]
    method, params = stub.calls[1]  # calls[0] is getMe from Bot.initialize()
    assert method == "setMyCommands"
    assert params["commands"] == [
        {"command": "start", "description": "开始"},
        {"command": "help", "description": "帮助"},
    ]


async def test_get_updates_long_poll_and_offset(stub: BotApiStub, bot: Bot) -> None:
    assert await bot.get_updates(timeout=0) == ()

    timer = threading.Timer(0.2, stub.send_text, args=(CHAT, "/start abc"))
    timer.start()
    started = time.monotonic()
    updates = await bot.get_updates(timeout=5)
    assert time.monotonic() - started < 2  # returned early, not after the full timeout
    assert len(updates) == 1
    update = updates[0]
    assert update.message is not None and update.message.text == "/start abc"
    assert update.message.from_user is not None
    assert update.message.from_user.id == CHAT
    assert update.message.from_user.language_code == "zh-hans"
    assert update.message.parse_entities() == {update.message.entities[0]: "/start"}

    # Not confirmed yet -> delivered again; confirming drops it.
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [update.update_id]
    stub.send_text(CHAT, "second")
    again = await bot.get_updates(offset=update.update_id + 1, timeout=0)
    assert [u.update_id for u in again] == [update.update_id + 1]
    assert again[0].message is not None and not again[0].message.entities
    assert await bot.get_updates(offset=again[0].update_id + 1, timeout=0) == ()

    polls = [p for m, p in stub.calls if m == "getUpdates"]
    assert polls[1]["timeout"] == 5


async def test_fault_injection(stub: BotApiStub, bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    # PTB >= 22.2 warns (even inside RetryAfter.__init__) unless timedelta mode is opted into.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    stub.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(CHAT, "a")
    assert _retry_seconds(info.value) == 3

    stub.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=CHAT)
    await bot.send_message(999, "other chat unaffected")
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(CHAT, "b")

    stub.fail_next("sendMessage", 400, "Bad Request: chat not found", count=2)
    for _ in range(2):
        with pytest.raises(BadRequest):
            await bot.send_message(CHAT, "c")
    ok = await bot.send_message(CHAT, "d")

    assert [m["text"] for m in stub.sent_messages(CHAT)] == ["d"]  # failures excluded
    assert ok.message_id == 1
    assert sum(stub.sends_per_second().values()) == 6  # every attempt counted
    assert stub.methods() == ["getMe"] + ["sendMessage"] * 6


def test_raw_http_json_and_bad_token(stub: BotApiStub) -> None:
    request = urllib.request.Request(
        f"{stub.base_url}{stub.token}/sendMessage",
        data=json.dumps({"chat_id": 5, "text": "json body"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.load(response)
    assert body["ok"] and body["result"]["text"] == "json body"
    assert stub.wait_for_message(5, "json", timeout=1)["message_id"] == 1

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{stub.base_url}wrong/getMe", timeout=5)
    assert info.value.code == 401
    info.value.close()

    with pytest.raises(TimeoutError, match="json body"):
        stub.wait_for_message(5, "never", timeout=0.1)


def test_press_button_unknown_message(stub: BotApiStub) -> None:
    with pytest.raises(KeyError, match="no bot message"):
        stub.press_button(CHAT, 1, "x")


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_chat is not None
    args = " ".join(context.args or [])
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("OK", callback_data="ok:1")]])
    await context.bot.send_message(
        update.effective_chat.id, f"欢迎 {args}".strip(), reply_markup=keyboard
    )


async def _button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None
    await query.answer("收到")
    text = getattr(query.message, "text", None)
    await query.edit_message_text(f"pressed {query.data} on {text!r}")


@pytest.fixture
async def app(stub: BotApiStub) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    application = ApplicationBuilder().token(stub.token).base_url(stub.base_url).build()
    application.add_handler(CommandHandler("start", _start))
    application.add_handler(CallbackQueryHandler(_button))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(timeout=dtm.timedelta(seconds=5))
        try:
            yield application
        finally:
            await application.updater.stop()
            await application.stop()


async def test_application_end_to_end(
    stub: BotApiStub,
    app: Application,  # type: ignore[type-arg]
) -> None:
    idx = stub.call_count()
    stub.send_text(CHAT, "/start 参保")
    reply = await stub.await_message(CHAT, "欢迎", after_index=idx, timeout=5)
    assert reply["text"] == "欢迎 参保"
    assert reply["message_id"] == 2  # the user's /start was message 1 in this chat

    idx = stub.call_count()
    stub.press_button(CHAT, reply["message_id"], "ok:1")
    edited = await stub.await_message(CHAT, "pressed", after_index=idx, timeout=5)
    assert edited["method"] == "editMessageText"
    assert edited["message_id"] == reply["message_id"]
    assert edited["text"] == "pressed ok:1 on '欢迎 参保'"

    answers = [p for m, p in stub.calls if m == "answerCallbackQuery"]
    assert answers == [{"callback_query_id": "1", "text": "收到"}]

    # Polling confirmed the processed updates: once offset is sent, nothing is pending.
    await stub.await_for(
        lambda m, p: m == "getUpdates" and p.get("offset", 0) >= 2, timeout=5, after_index=idx
    )
    assert stub.pending_updates() == []
    await asyncio.sleep(0)


def test_multipart_and_form_decoding(stub: BotApiStub) -> None:
    # What PTB's HTTPXRequest does: data= (every non-str value json.dumps-ed) plus files= for
    # uploads -> multipart/form-data; without files httpx sends x-www-form-urlencoded.
    markup = {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}
    fields = {"chat_id": "5", "caption": "123", "reply_markup": json.dumps(markup)}
    url = f"{stub.base_url}{stub.token}"
    with httpx.Client(trust_env=False) as client:
        res = client.post(f"{url}/sendDocument", data=fields, files={"document": ("a.txt", b"hi")})
        assert res.json() == {"ok": True, "result": True}
        res = client.post(f"{url}/setMyCommands", data={"commands": '[{"command": "x"}]'})
        assert res.json() == {"ok": True, "result": True}
    (doc_method, doc), (_, cmds) = stub.calls
    assert doc_method == "sendDocument"
    assert doc["chat_id"] == 5 and doc["caption"] == "123" and doc["reply_markup"] == markup
    assert doc["document"]["filename"] == "a.txt" and doc["document"]["content"] == b"hi"
    assert cmds == {"commands": [{"command": "x"}]}
    assert stub.unknown_methods == ["sendDocument"]


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(out, format="PNG")
    return out.getvalue()


async def test_send_photo_upload_caption_and_keyboard(stub: BotApiStub, bot: Bot) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="b")]])
    sent = await bot.send_photo(
        7,
        InputFile(_png(300, 200), filename="t.png"),
        caption="<b>时间轴</b>",
        parse_mode="HTML",
        reply_markup=markup,
    )
    assert sent.photo[-1].width == 300 and sent.photo[-1].height == 200
    assert sent.caption == "<b>时间轴</b>" and sent.reply_markup == markup
    (record,) = stub.sent_messages(7)
    assert record["method"] == "sendPhoto" and record["text"] == "<b>时间轴</b>"
    assert record["photo"]["filename"] == "t.png" and record["photo"]["size"] > 0
    again = await bot.send_photo(7, sent.photo[-1].file_id)  # by file_id: no upload
    assert again.photo[-1].width == 300


async def test_send_photo_is_refused_outside_telegrams_limits(stub: BotApiStub, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="caption is too long"):
        await bot.send_photo(7, InputFile(_png(10, 10), filename="t.png"), caption="字" * 1025)
    with pytest.raises(BadRequest, match=r"(?i)photo_invalid_dimensions"):
        await bot.send_photo(7, InputFile(_png(2100, 100), filename="t.png"))  # ratio 21
    with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):
        await bot.send_photo(7, InputFile(b"not a picture", filename="t.png"))
    with pytest.raises(BadRequest, match=r"(?i)wrong remote file identifier"):
        await bot.send_photo(7, "no-such-file-id")
    assert stub.sent_messages(7) == []


def test_send_photo_upload_must_be_multipart(stub: BotApiStub) -> None:
    url = f"{stub.base_url}{stub.token}/sendPhoto"
    body = {"chat_id": 7, "photo": {"content": "x", "filename": "t.png"}}
    with httpx.Client(trust_env=False) as client:
        res = client.post(url, json=body)
    assert res.status_code == 400 and "multipart" in res.json()["description"]

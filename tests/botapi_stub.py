"""A local, in-process stand-in for the Telegram Bot API, for tests.

The stub is a stdlib ``ThreadingHTTPServer`` bound to ``127.0.0.1`` on a free port, running in a
background thread.  Point python-telegram-bot at it with
``ApplicationBuilder().token(stub.token).base_url(stub.base_url)`` (or ``TELEGRAM_BASE_URL``),
then inject user input with :meth:`BotApiStub.send_text` / :meth:`BotApiStub.press_button` and
inspect what the bot did through :attr:`BotApiStub.calls` / :meth:`BotApiStub.sent_messages` /
:meth:`BotApiStub.wait_for_message`.

How python-telegram-bot 22 talks to the API (see ``telegram/request/_httpxrequest.py`` and
``_requestdata.py``): every call is a ``POST <base_url><token>/<method>``; the parameters are
passed to httpx as ``data=`` (so ``application/x-www-form-urlencoded``) or, when files are
uploaded, as ``data=`` + ``files=`` (``multipart/form-data``).  Every value is a *string*: str
values are sent as-is, everything else (ints, bools, lists, dicts such as ``reply_markup``,
``commands``, ``allowed_updates``) is ``json.dumps``-ed.  The stub therefore JSON-decodes every
form value except for the free-text fields listed in :data:`STRING_FIELDS` (otherwise a message
text like ``"42"`` or ``"true"`` would come back as an int/bool).  Plain JSON bodies are accepted
too.  Errors are mapped by PTB from the *HTTP status code*, not from ``error_code``, so error
replies use the error code as status.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

JSONDict = dict[str, Any]
Predicate = Callable[[str, JSONDict], bool]

#: Parameters that are free text and must never be JSON-decoded.
STRING_FIELDS: frozenset[str] = frozenset(
    {
        "text",
        "caption",
        "callback_query_id",
        "inline_query_id",
        "inline_message_id",
        "parse_mode",
        "url",
        "description",
        "short_description",
        "name",
        "title",
        "query",
        "data",
        "emoji",
        "question",
        "secret_token",
        "certificate",
        "ip_address",
        "language_code",
        "action",
        "business_connection_id",
        "message_effect_id",
    }
)

#: sendMessage-like methods whose result is a Message and that appear in ``sent_messages``.
MESSAGE_METHODS: frozenset[str] = frozenset({"sendMessage", "editMessageText", "sendPhoto"})

# Telegram's limits for sendPhoto (core.telegram.org/bots/api#sendphoto): an uploaded photo
# of at most 10 MB, width + height at most 10000, sides in a ratio of at most 20; a caption
# of 0-1024 characters after entities parsing.
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDES = 10000
PHOTO_MAX_RATIO = 20
CAPTION_MAX = 1024
_PNG = b"\x89PNG\r\n\x1a\n"

_TRUE_METHODS: frozenset[str] = frozenset(
    {
        "answerCallbackQuery",
        "setMyCommands",
        "deleteMyCommands",
        "deleteWebhook",
        "setWebhook",
        "close",
        "logOut",
        "sendChatAction",
        "deleteMessage",
        "setMyDescription",
        "setMyShortDescription",
        "setMyName",
        "setChatMenuButton",
    }
)


class _StubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stub: BotApiStub


class _Handler(BaseHTTPRequestHandler):
    server: _StubHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers+body writes hit the 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def do_GET(self) -> None:
        self._dispatch(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._dispatch(body)

    def _dispatch(self, body: bytes) -> None:
        stub = self.server.stub
        split = urlsplit(self.path)
        parts = split.path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot") or not parts[1]:
            self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        if parts[0][3:] != stub.token:
            self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        try:
            params = dict(parse_qsl(split.query, keep_blank_values=True))
            params = _decode_form(params)
            params.update(_parse_body(self.headers.get("Content-Type", ""), body))
        except (ValueError, UnicodeDecodeError) as exc:
            self._reply(
                400,
                {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"},
            )
            return
        multipart = self.headers.get("Content-Type", "").lower().startswith("multipart/form-data")
        status, payload = stub._handle(parts[1], params, multipart)
        self._reply(status, payload)

    def _reply(self, status: int, payload: JSONDict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        with contextlib.suppress(OSError):  # client may have given up (cancelled long poll)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()


def _decode_value(name: str, value: str) -> Any:
    if name in STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _decode_form(fields: dict[str, str]) -> JSONDict:
    return {name: _decode_value(name, value) for name, value in fields.items()}


def _parse_body(content_type: str, body: bytes) -> JSONDict:
    if not body:
        return {}
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        loaded = json.loads(body.decode("utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError("JSON body must be an object")
        return loaded
    if ctype == "multipart/form-data":
        return _parse_multipart(content_type, body)
    # application/x-www-form-urlencoded (httpx's default for ``data=``)
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    return _decode_form(dict(pairs))


def _parse_multipart(content_type: str, body: bytes) -> JSONDict:
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise ValueError("malformed multipart body")
    result: JSONDict = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            result[name] = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "size": len(raw),
                "content": raw,
            }
        else:
            charset = part.get_content_charset() or "utf-8"
            result[name] = _decode_value(name, raw.decode(charset))
    return result


def _photo_size(content: bytes) -> JSONDict:
    """Width, height and size of an uploaded PNG, checked against Telegram's photo limits."""
    if len(content) > PHOTO_MAX_BYTES:
        raise _ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS (file too big)")
    if not content.startswith(_PNG) or content[12:16] != b"IHDR":
        raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
    width, height = int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
    if not width or not height or width + height > PHOTO_MAX_SIDES:
        raise _ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
    if max(width, height) / min(width, height) > PHOTO_MAX_RATIO:
        raise _ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
    return {"width": width, "height": height, "file_size": len(content)}


def _caption_text(caption: str, parse_mode: Any) -> str:
    """The caption as Telegram counts it: after its HTML entities are parsed."""
    if str(parse_mode).upper() != "HTML":
        return caption
    return html.unescape(re.sub(r"<[^>]+>", "", caption))


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class BotApiStub:
    """Fake Telegram Bot API server.  Thread-safe; usable as a (sync) context manager."""

    BOT_ID = 123456
    BOT_USERNAME = "yibao_test_bot"

    def __init__(self, token: str = f"{BOT_ID}:TEST-TOKEN") -> None:
        self._token = token
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server: _StubHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._t0 = time.monotonic()

        self.calls: list[tuple[str, JSONDict]] = []
        self.call_times: list[float] = []  # time.monotonic() of each call, same index as calls
        self.unknown_methods: list[str] = []
        self._failed: set[int] = set()  # indices into ``calls`` that got an error reply
        self._result_ids: dict[int, int] = {}  # call index -> message_id of the result Message
        self._updates: list[JSONDict] = []
        self._next_update_id = itertools.count(1)
        self._next_callback_id = itertools.count(1)
        self._message_ids: dict[int | str, int] = {}
        self._messages: dict[tuple[int | str, int], JSONDict] = {}
        self._photos: dict[str, JSONDict] = {}  # file_id -> width, height, file_size
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._webhook_url = ""
        self._faults: list[JSONDict] = []
        self._send_times: list[float] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def token(self) -> str:
        return self._token

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("BotApiStub is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """Value for ``ApplicationBuilder().base_url(...)`` / ``TELEGRAM_BASE_URL``."""
        return f"http://127.0.0.1:{self.port}/bot"

    def start(self) -> BotApiStub:
        if self._server is not None:
            return self
        server = _StubHTTPServer(("127.0.0.1", 0), _Handler)
        server.stub = self
        self._server = server
        self._closed = False
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="BotApiStub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()  # release pending long polls
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> BotApiStub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ objects

    @property
    def bot_user(self) -> JSONDict:
        return {
            "id": int(self._token.split(":", 1)[0]) if self._token[:1].isdigit() else self.BOT_ID,
            "is_bot": True,
            "first_name": "Yibao Test Bot",
            "username": self.BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    @staticmethod
    def _user(user_id: int, language_code: str | None) -> JSONDict:
        user: JSONDict = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        if language_code:
            user["language_code"] = language_code
        return user

    @staticmethod
    def _chat(chat_id: int | str) -> JSONDict:
        return {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"}

    def _new_message_id(self, chat_id: int | str) -> int:
        # A private chat has one message-id sequence shared by both sides, like Telegram.
        self._message_ids[chat_id] = self._message_ids.get(chat_id, 0) + 1
        return self._message_ids[chat_id]

    def _queue_update(self, update: JSONDict) -> JSONDict:
        update = {"update_id": next(self._next_update_id), **update}
        self._updates.append(update)
        self._cond.notify_all()
        return update

    # ------------------------------------------------------------------ user input

    def send_text(
        self,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        language_code: str | None = "zh-hans",
    ) -> JSONDict:
        """Queue a private-chat text message Update from a user; returns the Update dict."""
        with self._cond:
            message: JSONDict = {
                "message_id": self._new_message_id(chat_id),
                "from": self._user(user_id if user_id is not None else chat_id, language_code),
                "chat": self._chat(chat_id),
                "date": int(time.time()),
                "text": text,
            }
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                message["entities"] = [
                    {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
                ]
            return self._queue_update({"message": message})

    def press_button(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        user_id: int | None = None,
        language_code: str | None = "zh-hans",
    ) -> JSONDict:
        """Queue a callback_query Update for an inline button on bot message ``message_id``."""
        with self._cond:
            message = self._messages.get((chat_id, message_id))
            if message is None:
                known = sorted(mid for (cid, mid) in self._messages if cid == chat_id)
                raise KeyError(f"no bot message {message_id} in chat {chat_id}; known ids: {known}")
            uid = user_id if user_id is not None else chat_id
            callback_query = {
                "id": str(next(self._next_callback_id)),
                "from": self._user(uid, language_code),
                "chat_instance": f"ci-{chat_id}",
                "message": json.loads(json.dumps(message)),
                "data": data,
            }
            return self._queue_update({"callback_query": callback_query})

    def block_bot(self, chat_id: int, user_id: int | None = None) -> JSONDict:
        """Queue the ``my_chat_member`` Update Telegram sends when a user blocks the bot."""
        with self._cond:
            uid = user_id if user_id is not None else chat_id
            change = {
                "chat": self._chat(chat_id),
                "from": self._user(uid, None),
                "date": int(time.time()),
                "old_chat_member": {"user": self.bot_user, "status": "member"},
                "new_chat_member": {"user": self.bot_user, "status": "kicked", "until_date": 0},
            }
            return self._queue_update({"my_chat_member": change})

    def pending_updates(self) -> list[JSONDict]:
        with self._lock:
            return list(self._updates)

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        chat_id: int | str | None = None,
        count: int = 1,
        when: Callable[[JSONDict], bool] | None = None,
    ) -> None:
        """Make the next ``count`` calls of ``method`` (to ``chat_id`` if given) fail.

        The reply is Telegram's error JSON with HTTP status ``error_code`` (PTB maps the status
        code to an exception: 400 BadRequest, 403 Forbidden, 409 Conflict, ...);
        ``retry_after`` adds ``parameters.retry_after`` (-> ``telegram.error.RetryAfter``).
        ``when``, if given, is called with the call's parameters and limits the fault to the
        calls it returns True for (e.g. ``getUpdates`` whose ``offset`` would confirm an
        update).  A failed call has no effect on the stub's state: a failed ``getUpdates``
        confirms nothing.
        """
        with self._lock:
            self._faults.append(
                {
                    "method": method,
                    "error_code": error_code,
                    "description": description,
                    "retry_after": retry_after,
                    "chat_id": chat_id,
                    "remaining": count,
                    "when": when,
                }
            )

    def clear_faults(self) -> None:
        """Forget every fault registered with :meth:`fail_next` that has not fired yet."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, params: JSONDict) -> JSONDict | None:
        for fault in self._faults:
            if fault["method"] != method or fault["remaining"] <= 0:
                continue
            if fault["chat_id"] is not None and str(params.get("chat_id")) != str(fault["chat_id"]):
                continue
            if fault["when"] is not None and not fault["when"](params):
                continue
            fault["remaining"] -= 1
            if fault["remaining"] <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def sends_per_second(self) -> dict[int, int]:
        """sendMessage and sendPhoto attempts (failed ones included) per whole second since
        stub creation."""
        with self._lock:
            counts: dict[int, int] = {}
            for t in self._send_times:
                second = int(t - self._t0)
                counts[second] = counts.get(second, 0) + 1
            return counts

    # ------------------------------------------------------------------ inspection

    def call_count(self) -> int:
        with self._lock:
            return len(self.calls)

    def methods(self) -> list[str]:
        with self._lock:
            return [method for method, _ in self.calls]

    def _message_record(self, index: int) -> JSONDict | None:
        method, params = self.calls[index]
        if method not in MESSAGE_METHODS or index in self._failed:
            return None
        return {
            "index": index,
            "method": method,
            "chat_id": params.get("chat_id"),
            "message_id": self._result_ids.get(index, params.get("message_id")),
            "text": params.get("caption") if method == "sendPhoto" else params.get("text"),
            "photo": params.get("photo") if method == "sendPhoto" else None,
            "reply_markup": params.get("reply_markup"),
            "parse_mode": params.get("parse_mode"),
        }

    def sent_messages(self, chat_id: int | str | None = None) -> list[JSONDict]:
        """Successful sendMessage/editMessageText calls, in order, as dicts with
        index, method, chat_id, message_id, text (a photo's caption), photo, reply_markup,
        parse_mode."""
        with self._lock:
            out = []
            for index in range(len(self.calls)):
                record = self._message_record(index)
                if record is None:
                    continue
                if chat_id is not None and str(record["chat_id"]) != str(chat_id):
                    continue
                out.append(record)
            return out

    def wait_for(
        self, predicate: Predicate, timeout: float = 10.0, after_index: int = 0
    ) -> tuple[int, str, JSONDict]:
        """Block until a call at index >= after_index satisfies ``predicate(method, params)``;
        returns ``(index, method, params)``.  Blocking: from async code use :meth:`await_for`.
        """
        deadline = time.monotonic() + timeout
        checked = after_index
        with self._cond:
            while True:
                while checked < len(self.calls):
                    method, params = self.calls[checked]
                    if predicate(method, params):
                        return checked, method, params
                    checked += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    recent = ", ".join(m for m, _ in self.calls[-10:])
                    raise TimeoutError(
                        f"no API call matched within {timeout}s (after index {after_index}); "
                        f"last calls: [{recent}]"
                    )
                self._cond.wait(remaining)

    def wait_for_message(
        self,
        chat_id: int | str,
        contains: str | None = None,
        after_index: int = 0,
        timeout: float = 10.0,
    ) -> JSONDict:
        """Block until a successful sendMessage/editMessageText to ``chat_id`` at call index
        >= ``after_index`` whose text contains ``contains``; returns its sent_messages dict.
        Blocking: from a coroutine sharing the loop with the bot use :meth:`await_message`.
        """

        def matches(index: int) -> bool:
            record = self._message_record(index)
            return (
                record is not None
                and str(record["chat_id"]) == str(chat_id)
                and (contains is None or contains in (record["text"] or ""))
            )

        deadline = time.monotonic() + timeout
        checked = after_index
        with self._cond:
            while True:
                while checked < len(self.calls):
                    if matches(checked):
                        record = self._message_record(checked)
                        assert record is not None
                        return record
                    checked += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    texts = [
                        repr(m["text"])
                        for m in self.sent_messages(chat_id)
                        if m["index"] >= after_index
                    ][-5:]
                    raise TimeoutError(
                        f"no message to chat {chat_id} containing {contains!r} within "
                        f"{timeout}s (after call index {after_index}); last texts to this chat: "
                        f"{texts or 'none'}; last methods: {self.methods()[-8:]}"
                    )
                self._cond.wait(remaining)

    async def await_message(
        self,
        chat_id: int | str,
        contains: str | None = None,
        after_index: int = 0,
        timeout: float = 10.0,
    ) -> JSONDict:
        """Async :meth:`wait_for_message` (runs in a worker thread, keeps the loop free)."""
        return await asyncio.to_thread(
            self.wait_for_message, chat_id, contains, after_index, timeout
        )

    async def await_for(
        self, predicate: Predicate, timeout: float = 10.0, after_index: int = 0
    ) -> tuple[int, str, JSONDict]:
        """Async :meth:`wait_for`."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout, after_index)

    # ------------------------------------------------------------------ request handling

    def _handle(
        self, method: str, params: JSONDict, multipart: bool = False
    ) -> tuple[int, JSONDict]:
        with self._cond:
            index = len(self.calls)
            now = time.monotonic()
            self.calls.append((method, params))
            self.call_times.append(now)
            if method in ("sendMessage", "sendPhoto"):
                self._send_times.append(now)
            fault = self._take_fault(method, params)
            if fault is not None:
                self._failed.add(index)
                self._cond.notify_all()
                error: JSONDict = {
                    "ok": False,
                    "error_code": fault["error_code"],
                    "description": fault["description"],
                }
                if fault["retry_after"] is not None:
                    error["parameters"] = {"retry_after": fault["retry_after"]}
                return int(fault["error_code"]), error
            if method == "getUpdates":
                self._cond.notify_all()
                return 200, {"ok": True, "result": self._get_updates(params)}
            try:
                result = self._result_for(method, params, multipart)
            except _ApiError as exc:
                self._failed.add(index)
                self._cond.notify_all()
                return exc.code, {"ok": False, "error_code": exc.code, "description": str(exc)}
            if isinstance(result, dict) and "message_id" in result:
                self._result_ids[index] = int(result["message_id"])
            self._cond.notify_all()
            return 200, {"ok": True, "result": result}

    def _get_updates(self, params: JSONDict) -> list[JSONDict]:
        # Called with the condition held; may wait on it (long polling).
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = float(params.get("timeout") or 0)
        if offset < 0:
            self._updates = self._updates[offset:]
        elif offset > 0:  # confirm: forget everything below the offset
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        while not self._updates and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        return list(self._updates[:limit])

    def _result_for(self, method: str, params: JSONDict, multipart: bool = False) -> Any:
        if method == "getMe":
            return self.bot_user
        if method == "sendMessage":
            return self._send_message(params)
        if method == "sendPhoto":
            return self._send_photo(params, multipart)
        if method in ("editMessageText", "editMessageReplyMarkup"):
            return self._edit_message(method, params)
        if method in ("setMyCommands", "getMyCommands", "deleteMyCommands"):
            key = (
                json.dumps(params.get("scope") or {"type": "default"}, sort_keys=True),
                str(params.get("language_code") or ""),
            )
            if method == "setMyCommands":
                self._commands[key] = list(params.get("commands") or [])
                return True
            if method == "deleteMyCommands":
                self._commands.pop(key, None)
                return True
            return self._commands.get(key, [])
        if method == "deleteWebhook":
            self._webhook_url = ""
            if params.get("drop_pending_updates"):
                self._updates.clear()
            return True
        if method == "setWebhook":
            self._webhook_url = str(params.get("url") or "")
            return True
        if method == "getWebhookInfo":
            return {
                "url": self._webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
        if method in _TRUE_METHODS:
            return True
        self.unknown_methods.append(method)
        return True

    @staticmethod
    def _echo_markup(message: JSONDict, markup: Any) -> None:
        # Telegram only ever returns *inline* keyboards in Message.reply_markup; PTB parses
        # that field with InlineKeyboardMarkup.de_json, which raises KeyError on a reply keyboard.
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)

    def _send_message(self, params: JSONDict) -> JSONDict:
        chat_id = params.get("chat_id")
        if chat_id is None or params.get("text") in (None, ""):
            raise _ApiError(400, "Bad Request: message text is empty")
        if not isinstance(chat_id, int | str):
            raise _ApiError(400, "Bad Request: chat not found")
        message: JSONDict = {
            "message_id": self._new_message_id(chat_id),
            "from": self.bot_user,
            "chat": self._chat(chat_id),
            "date": int(time.time()),
            "text": str(params["text"]),
        }
        self._echo_markup(message, params.get("reply_markup"))
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _send_photo(self, params: JSONDict, multipart: bool) -> JSONDict:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int | str):
            raise _ApiError(400, "Bad Request: chat not found")
        photo = params.get("photo")
        if isinstance(photo, dict):
            if not multipart:
                raise _ApiError(400, "Bad Request: a file must be uploaded as multipart/form-data")
            size = _photo_size(photo["content"])
        elif isinstance(photo, str) and photo in self._photos:
            size = self._photos[photo]
        else:
            raise _ApiError(400, "Bad Request: wrong remote file identifier specified")
        caption = str(params.get("caption") or "")
        if _utf16_len(_caption_text(caption, params.get("parse_mode"))) > CAPTION_MAX:
            raise _ApiError(400, "Bad Request: message caption is too long")
        file_id = f"photo-{len(self._photos) + 1}"
        self._photos[file_id] = size
        message: JSONDict = {
            "message_id": self._new_message_id(chat_id),
            "from": self.bot_user,
            "chat": self._chat(chat_id),
            "date": int(time.time()),
            "photo": [{"file_id": file_id, "file_unique_id": file_id, **size}],
        }
        if caption:
            message["caption"] = caption
        self._echo_markup(message, params.get("reply_markup"))
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _edit_message(self, method: str, params: JSONDict) -> JSONDict | bool:
        if params.get("inline_message_id"):
            return True
        chat_id = params.get("chat_id")
        message_id = params.get("message_id")
        if not isinstance(chat_id, int | str) or not isinstance(message_id, int):
            raise _ApiError(400, "Bad Request: message to edit not found")
        stored = self._messages.get((chat_id, message_id))
        if stored is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        edited = dict(stored)
        if method == "editMessageText":
            if params.get("text") in (None, ""):
                raise _ApiError(400, "Bad Request: message text is empty")
            edited["text"] = str(params["text"])
        self._echo_markup(edited, params.get("reply_markup"))
        if edited.get("text") == stored.get("text") and edited.get("reply_markup") == stored.get(
            "reply_markup"
        ):
            raise _ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup of the existing message are exactly the same",
            )
        edited["edit_date"] = int(time.time())
        self._messages[(chat_id, message_id)] = edited
        return edited


class _ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code


@contextlib.contextmanager
def running_stub() -> Iterator[BotApiStub]:
    """``with running_stub() as stub: ...`` convenience wrapper."""
    with BotApiStub() as stub:
        yield stub

"""Telegram updates in, at least once: an update is confirmed only after it is committed.

python-telegram-bot's updater confirms a batch (the next getUpdates' offset) as soon as it
is queued, and its webhook answers 200 before handling, so a crash loses what was queued.
Here, polling asks for the next updates with an offset past an update only once that
update's state and replies are committed (and the replies sent, or left in the outbox);
the webhook answers 200 only then, and 500 otherwise, so Telegram delivers it again. The
service recognises an update it has handled (``State.seen``) and only sends what its
outbox still holds, so a redelivery repeats at most the reply in flight.

Updates of one chat are handled one after the other, in order; chats in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import signal
import socket
import warnings
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import tornado.httpserver
import tornado.web
from telegram import Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application
from telegram.warnings import PTBUserWarning

from bot import metrics
from bot.config import Settings

log = logging.getLogger(__name__)

UNCOMMITTED = "uncommitted"  # bot_data: updates whose handling failed before the commit
POLL_TIMEOUT = 10  # seconds a getUpdates waits for something new
ATTEMPTS = 5  # a failing update is handled this often before it is given up
MAX_BODY = 256 * 1024  # bytes of a webhook request: an update is a few kilobytes
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

App = Application[Any, Any, Any, Any, Any, Any]

# The raw getUpdates (so an update that cannot be parsed is skipped alone) is the one we want.
warnings.filterwarnings("ignore", "Please use 'Bot.getUpdates'", PTBUserWarning)


async def serve(
    app: App, settings: Settings, sockets: Sequence[socket.socket] | None = None
) -> None:
    """Run the bot until SIGTERM or SIGINT: polling, or a webhook when configured (on
    ``sockets`` when given: ``python -m bot serve`` binds them once for every process)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app.bot_data[UNCOMMITTED] = set()
    async with app:
        if app.post_init is not None:
            await app.post_init(app)
        status = _status_server(app, settings)
        try:
            intake = poll(app) if not settings.webhook_url else webhook(app, settings, sockets)
            await _until(stop, asyncio.ensure_future(intake))
        finally:
            if status is not None:
                status.stop()
            if app.post_shutdown is not None:
                await app.post_shutdown(app)


def _status_server(app: App, settings: Settings) -> tornado.httpserver.HTTPServer | None:
    """``/healthz`` and ``/metrics`` on ``METRICS_PORT``, when set."""
    if settings.metrics_port is None:
        return None
    web = tornado.web.Application(
        metrics.routes(app.bot_data["service"].broadcasts), log_function=lambda _h: None
    )
    server = tornado.httpserver.HTTPServer(web)
    server.listen(settings.metrics_port, settings.metrics_listen)
    return server


async def _until(stop: asyncio.Event, task: asyncio.Future[None]) -> None:
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        # Whatever was being handled is not confirmed yet: it comes again after a restart.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return
    task.result()  # an intake that ended by itself failed (a wrong token): say so


async def handle(app: App, update: Update) -> bool:
    """Handle one update; True once its state is committed."""
    failed: set[int] = app.bot_data[UNCOMMITTED]
    failed.discard(update.update_id)
    with metrics.HANDLING.time():
        await app.process_update(update)
    committed = update.update_id not in failed
    failed.discard(update.update_id)
    metrics.UPDATES.labels("committed" if committed else "failed").inc()
    return committed


async def handle_batch(app: App, updates: Sequence[Update]) -> set[int]:
    """Handle ``updates``, each chat's in order and the chats in parallel; the ids committed.
    After an update of a chat fails, that chat's later ones wait for its redelivery."""
    chats: dict[int, list[Update]] = {}
    for update in updates:
        chat = update.effective_chat
        chats.setdefault(chat.id if chat is not None else -update.update_id, []).append(update)
    committed: set[int] = set()

    async def in_order(chat_updates: list[Update]) -> None:
        for update in chat_updates:
            if not await handle(app, update):
                return
            committed.add(update.update_id)

    await asyncio.gather(*(in_order(chat_updates) for chat_updates in chats.values()))
    return committed


def parse(app: App, raw: object) -> list[tuple[int, Update | None]]:
    """getUpdates' result, one update at a time: None for one that cannot be read (logged
    by its id only; its contents may be a resident's message)."""
    parsed: list[tuple[int, Update | None]] = []
    for item in raw if isinstance(raw, list) else []:
        update_id = item.get("update_id") if isinstance(item, dict) else None
        if not isinstance(update_id, int):
            continue
        try:
            parsed.append((update_id, Update.de_json(item, app.bot)))
        except Exception as err:
            log.error("update %d could not be read (%s); skipped", update_id, type(err).__name__)
            parsed.append((update_id, None))
    return parsed


async def poll(app: App) -> None:
    """Long-poll getUpdates; the offset moves past an update only once it is committed."""
    await app.bot.delete_webhook()
    offset, attempts, backoff = 0, 0, 1.0
    while True:
        try:
            raw = await app.bot.do_api_request(
                "getUpdates",
                api_kwargs={
                    "offset": offset,
                    "timeout": POLL_TIMEOUT,
                    "allowed_updates": Update.ALL_TYPES,
                },
                read_timeout=POLL_TIMEOUT + 10,
            )
        except InvalidToken:
            raise
        except TelegramError as err:  # network trouble, Telegram busy, another poller
            log.warning("getUpdates failed: %s; retrying in %.0f s", type(err).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        backoff = 1.0
        updates = parse(app, raw)
        committed = await handle_batch(app, [u for _, u in updates if u is not None])
        for update_id, update in updates:
            if update is not None and update_id not in committed:
                attempts += 1
                if attempts < ATTEMPTS:  # the database may be back in a moment
                    await asyncio.sleep(min(2.0**attempts, 30.0))
                    break
                log.error("update %d failed %d times; given up", update_id, attempts)
            attempts = 0
            offset = update_id + 1


class _WebhookHandler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("POST",)

    def initialize(self, app: App, secret: str) -> None:
        self.app = app
        self.secret = secret

    async def post(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            self.set_status(HTTPStatus.FORBIDDEN)
            return
        try:
            data = json.loads(self.request.body)
        except ValueError:
            self.set_status(HTTPStatus.BAD_REQUEST)
            return
        [(_, update)] = parse(self.app, [data]) or [(0, None)]
        if update is None:  # JSON, but no update we can read: sending it again will not help
            self.set_status(HTTPStatus.BAD_REQUEST)
            return
        committed = await handle(self.app, update)
        # Not committed: Telegram delivers it again later.
        self.set_status(HTTPStatus.OK if committed else HTTPStatus.INTERNAL_SERVER_ERROR)

    def log_exception(self, *args: Any) -> None:
        """Tornado would log the request, which may carry a resident's message."""
        log.error("webhook request failed")


async def webhook(
    app: App, settings: Settings, sockets: Sequence[socket.socket] | None = None
) -> None:
    """Serve the webhook; 200 only once an update is committed."""
    assert settings.webhook_url is not None
    secret = (
        settings.webhook_secret.get_secret_value()
        if settings.webhook_secret
        # Without a secret anyone who finds the URL could post updates as any user (staff
        # included): make one up and tell Telegram, which sends it with every update.
        else secrets.token_urlsafe(32)
    )
    path = "/" + settings.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    web = tornado.web.Application(
        [
            (rf"{path}/?", _WebhookHandler, {"app": app, "secret": secret}),
            *metrics.routes(app.bot_data["service"].broadcasts),
        ],
        log_function=lambda _handler: None,
    )
    server = tornado.httpserver.HTTPServer(web, max_body_size=MAX_BODY, xheaders=True)
    await app.bot.set_webhook(
        settings.webhook_url, secret_token=secret, allowed_updates=Update.ALL_TYPES
    )
    if sockets is None:
        server.listen(settings.webhook_port, settings.webhook_listen)
    else:
        server.add_sockets(sockets)
    try:
        await asyncio.Event().wait()
    finally:
        server.stop()
        await server.close_all_connections()

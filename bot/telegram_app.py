"""The python-telegram-bot adapter: Telegram updates in, conversation replies out.

Thin on purpose: every decision is in ``conversations``; here we only translate updates
into events, send what comes back, and keep errors kind and logs free of personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from typing import Any

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import MessageLimit, ParseMode
from telegram.error import BadRequest
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.config import Settings
from bot.service import ConversationService
from bot.storage import Store
from conversations.i18n import localizer, negotiate
from conversations.render import message
from conversations.state import Command, Event, Press, Reply, Text
from policies.faq import default_index
from policies.loader import default_library
from policies.text import N_

log = logging.getLogger(__name__)

COMMANDS = (
    ("start", N_("开始计算居民医保缴费")),
    ("quote", N_("重新计算缴费")),
    ("faq", N_("政策问答")),
    ("help", N_("帮助")),
    ("lang", N_("切换语言")),
    ("cancel", N_("取消并删除已填写的信息")),
)
# Telegram keys command menus by two-letter language code only, so zh (and the default)
# get Simplified Chinese; zh_Hant users see those too.
MENU_LANGUAGES = {None: "zh_Hans", "zh": "zh_Hans", "en": "en"}


def command_menu(locale: str) -> list[BotCommand]:
    loc = localizer(locale)
    return [BotCommand(name, loc.gettext(description)) for name, description in COMMANDS]


PURGE_EVERY = dt.timedelta(minutes=10)


def _service(context: ContextTypes.DEFAULT_TYPE) -> ConversationService:
    service: ConversationService = context.bot_data["service"]
    return service


def markup(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return _keyboard(tuple(tuple((b.label, b.data) for b in row) for row in reply.buttons))


@functools.lru_cache(maxsize=1024)
def _keyboard(rows: tuple[tuple[tuple[str, str], ...], ...]) -> InlineKeyboardMarkup:
    # The same few keyboards recur (regions, a region's categories, tiers): PTB objects are
    # immutable, so one built keyboard serves every chat (benchmarks/bench_updates.py).
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in rows]
    )


def split_html(html: str, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """Split at line breaks so no message exceeds Telegram's limit (tags never span lines)."""
    chunks: list[str] = []
    current = ""
    for line in html.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit and current:
            chunks.append(current)
            candidate = line
        current = candidate
    chunks.append(current)
    return chunks


async def send(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, replies: list[Reply], pressed: int | None
) -> None:
    bot = context.bot
    for reply in replies:
        keyboard = markup(reply)
        if reply.edit and pressed is not None:
            try:
                await bot.edit_message_text(
                    reply.html,
                    chat_id=chat_id,
                    message_id=pressed,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard,
                )
                continue
            except BadRequest as err:
                if "not modified" in str(err).lower():
                    continue
                # The message is too old to edit: send a new one instead.
        chunks = split_html(reply.html)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            await bot.send_message(
                chat_id, chunk, parse_mode=ParseMode.HTML, reply_markup=keyboard if last else None
            )


async def _handle(
    update: Update, context: ContextTypes.DEFAULT_TYPE, event: Event, pressed: int | None = None
) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    user = update.effective_user
    language = user.language_code if user else None
    staff = user is not None and user.id in context.bot_data["staff_ids"]
    replies = await _service(context).process(
        chat.id, event, update.update_id, language, staff=staff
    )
    await send(context, chat.id, replies, pressed)


async def on_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    text = update.effective_message.text if update.effective_message else ""
    name = (text or "/").split()[0][1:].split("@")[0].lower()
    await _handle(update, context, Command(name))


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await _handle(update, context, Text(update.effective_message.text or ""))


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _handle(update, context, Command("nontext"))


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer()
    pressed = query.message.message_id if query.message else None
    await _handle(update, context, Press(query.data or ""), pressed)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    # Log where it failed, never the update or the exception text: both may carry a
    # resident's birth date or identity.
    err = context.error
    tb = err.__traceback__ if err else None
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
    if update is None:  # polling or network trouble, no update involved
        log.warning("telegram error: %s at %s", type(err).__name__, where)
        return
    log.error("update failed: %s at %s", type(err).__name__, where)
    if isinstance(update, Update) and update.effective_chat is not None:
        user = update.effective_user
        locale = negotiate(user.language_code if user else None)
        with contextlib.suppress(Exception):
            await context.bot.send_message(update.effective_chat.id, message(locale, "error"))


async def _purge_forever(store: Store, retention: dt.timedelta) -> None:
    while True:
        removed = await store.purge(dt.datetime.now(dt.UTC) - retention)
        if removed:
            log.info("purged %d idle conversations", removed)
        await asyncio.sleep(PURGE_EVERY.total_seconds())


def build_application(settings: Settings) -> Application[Any, Any, Any, Any, Any, Any]:
    assert settings.bot_token is not None
    store = Store(settings.database_url)

    async def post_init(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await store.init()
        app.bot_data["service"] = ConversationService(store, default_library(), settings.timezone)
        app.bot_data["staff_ids"] = settings.staff_ids
        # jieba and the FAQ index take a couple of seconds: build them before the first question.
        app.bot_data["faq_warmup"] = asyncio.get_running_loop().run_in_executor(None, default_index)
        for code, locale in MENU_LANGUAGES.items():
            await app.bot.set_my_commands(command_menu(locale), language_code=code)
        app.bot_data["purge"] = asyncio.create_task(
            _purge_forever(store, dt.timedelta(hours=settings.retention_hours))
        )

    async def post_shutdown(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        task = app.bot_data.get("purge")
        if task is not None:
            task.cancel()
        await store.close()

    app = (
        ApplicationBuilder()
        .token(settings.bot_token.get_secret_value())
        .base_url(settings.telegram_base_url)
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    app.add_handler(CommandHandler([name for name, _ in COMMANDS], on_command))
    app.add_handler(MessageHandler(filters.COMMAND, on_command))
    app.add_handler(CallbackQueryHandler(on_button))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, on_text))
    app.add_handler(MessageHandler(~filters.TEXT & ~filters.StatusUpdate.ALL, on_other))
    app.add_error_handler(on_error)
    return app


def run(settings: Settings) -> None:
    app = build_application(settings)
    if settings.webhook_url:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        path = settings.webhook_url.rstrip("/").rsplit("/", 1)[-1]
        app.run_webhook(
            listen=settings.webhook_listen,
            port=settings.webhook_port,
            url_path=path,
            webhook_url=settings.webhook_url,
            secret_token=secret,
            allowed_updates=Update.ALL_TYPES,
        )
    else:
        app.run_polling(allowed_updates=Update.ALL_TYPES)

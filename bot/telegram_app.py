"""The python-telegram-bot adapter: Telegram updates in, conversation replies out.

Thin on purpose: every decision is in ``conversations``; here we only translate updates
into events, send what comes back, and keep errors kind and logs free of personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gc
import json
import logging
import socket
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    ChatMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import metrics, reminders
from bot.config import Settings
from bot.delivery import DeliveryWorker, Pacer
from bot.intake import UNCOMMITTED, serve
from bot.service import ConversationService, Outgoing
from bot.splitting import split_html
from bot.storage import Store
from conversations import timeline
from conversations.broadcast import Progress, progress_text
from conversations.context import Context
from conversations.i18n import localizer, negotiate
from conversations.render import message
from conversations.state import Command, Event, Press, Reply, Text
from policies.faq import default_index
from policies.loader import default_library
from policies.text import N_

log = logging.getLogger(__name__)
T = TypeVar("T")

# Replies are sent with Bot.do_api_request (see _call), which would warn each time.
warnings.filterwarnings(
    "ignore",
    r"Please use 'Bot\.(sendMessage|editMessageText|answerCallbackQuery)'",
    PTBUserWarning,
)

COMMANDS = (
    ("start", N_("开始计算居民医保缴费")),
    ("quote", N_("重新计算缴费")),
    ("faq", N_("政策问答")),
    ("subscribe", N_("订阅缴费公告和截止提醒")),
    ("unsubscribe", N_("退订公告")),
    ("help", N_("帮助")),
    ("lang", N_("切换语言")),
    ("cancel", N_("取消并删除已填写的信息")),
)
# Shown in the staff members' own chats only (the commands refuse everyone else anyway).
STAFF_COMMANDS = (
    ("broadcast", N_("发送公告")),
    ("broadcast_status", N_("公告发送进度")),
    ("reminders", N_("定时截止提醒")),
)
# Telegram keys command menus by two-letter language code only, so zh (and the default)
# get Simplified Chinese; zh_Hant users see those too.
MENU_LANGUAGES = {None: "zh_Hans", "zh": "zh_Hans", "en": "en"}


def command_menu(locale: str, staff: bool = False) -> list[BotCommand]:
    loc = localizer(locale)
    commands = COMMANDS + STAFF_COMMANDS if staff else COMMANDS
    return [BotCommand(name, loc.gettext(description)) for name, description in commands]


PURGE_EVERY = dt.timedelta(minutes=10)
REMINDERS_EVERY = dt.timedelta(minutes=1)
RESEND_AFTER = dt.timedelta(seconds=30)


def _service(context: ContextTypes.DEFAULT_TYPE) -> ConversationService:
    service: ConversationService = context.bot_data["service"]
    return service


Rows = tuple[tuple[tuple[str, str], ...], ...]


def _rows(reply: Reply) -> Rows | None:
    if not reply.buttons:
        return None
    return tuple(tuple((b.label, b.data) for b in row) for row in reply.buttons)


def markup(reply: Reply) -> InlineKeyboardMarkup | None:
    rows = _rows(reply)
    return None if rows is None else _keyboard(rows)


@functools.lru_cache(maxsize=1024)
def _keyboard(rows: Rows) -> InlineKeyboardMarkup:
    # The same few keyboards recur (regions, a region's categories, tiers): PTB objects are
    # immutable, so one built keyboard serves every chat (benchmarks/bench_updates.py).
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in rows]
    )


@functools.lru_cache(maxsize=1024)
def _keyboard_json(rows: Rows) -> str:
    # What PTB's request encoding makes of the keyboard (json.dumps of its to_dict), once.
    return json.dumps(_keyboard(rows).to_dict())


async def _call(bot: Bot, method: str, **params: object) -> None:
    """A Bot API call whose answer is not read: PTB encodes the request and turns a refusal
    into its exception (RetryAfter, Forbidden, BadRequest, …) as ``bot.send_message`` does,
    but builds no ``Message`` from the answer, which cost about as much as the rest of the
    call (benchmarks/bench_updates.py)."""
    kwargs = {key: value for key, value in params.items() if value is not None}
    await bot.do_api_request(method, api_kwargs=kwargs)


def _lane(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int
) -> contextlib.AbstractAsyncContextManager[None]:
    """Interactive replies take the delivery worker's priority lane: ahead of broadcasts,
    within the overall rate limit they share."""
    worker: DeliveryWorker | None = context.bot_data.get("worker")
    return worker.interactive(chat_id) if worker else contextlib.nullcontext()


async def send(context: ContextTypes.DEFAULT_TYPE, chat_id: int, outbox: list[Outgoing]) -> None:
    """Send the chat's outbox in order, each reply deleted from it once sent.

    A reply Telegram refuses for good (BadRequest, Forbidden) is deleted too, so it does
    not come back on every update; a network failure leaves it for the next update of the
    chat, or for :func:`_resend_forever`.
    """
    service = _service(context)
    for item in outbox:
        try:
            await _send_reply(context, chat_id, item.reply, item.pressed)
        except (BadRequest, Forbidden):
            await service.sent(item)
            raise
        await service.sent(item)
        metrics.REPLIES.inc()
        if item.reply.unanswered is not None:
            metrics.FAQ_NO_ANSWER.labels(item.reply.unanswered).inc()


async def _send_reply(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, reply: Reply, pressed: int | None
) -> None:
    bot = context.bot
    rows = _rows(reply)
    keyboard = None if rows is None else _keyboard_json(rows)
    if reply.edit and pressed is not None:
        try:
            async with _lane(context, chat_id):
                await _call(
                    bot,
                    "editMessageText",
                    chat_id=chat_id,
                    message_id=pressed,
                    text=reply.html,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard,
                )
            return
        except BadRequest as err:
            if "not modified" in str(err).lower():
                return
            # The message is too old to edit: send a new one instead.
    if reply.photo is not None and await _send_photo(context, chat_id, reply, markup(reply)):
        return
    chunks = split_html(reply.html)
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        async with _lane(context, chat_id):
            await _call(
                bot,
                "sendMessage",
                chat_id=chat_id,
                text=chunk,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard if last else None,
            )


class NotCommitted(Exception):
    """Handling an update failed before its state was committed: intake delivers it again."""


async def _send_photo(
    context: ContextTypes.DEFAULT_TYPE,
    chat_id: int,
    reply: Reply,
    keyboard: InlineKeyboardMarkup | None,
) -> bool:
    """The reply's picture with its text as caption; False where none can be drawn."""
    assert reply.photo is not None
    png = timeline.render_png(reply.photo)
    if png is None:
        return False
    async with _lane(context, chat_id):
        await context.bot.send_photo(
            chat_id,
            InputFile(png, filename="timeline.png"),
            caption=reply.html,
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
        )
    return True


async def _handle(
    update: Update, context: ContextTypes.DEFAULT_TYPE, event: Event, pressed: int | None = None
) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    user = update.effective_user
    language = user.language_code if user else None
    staff = user is not None and user.id in context.bot_data["staff_ids"]
    service = _service(context)
    # The chat's turn, across processes: its updates are applied and answered one at a time.
    async with service.store.chat(chat.id):
        try:
            outbox = await service.receive(
                chat.id,
                event,
                update.update_id,
                language,
                staff=staff,
                user_id=user.id if user else None,
                pressed=pressed,
            )
        except Exception as err:
            raise NotCommitted(type(err).__name__) from err
        await send(context, chat.id, outbox)


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
    with contextlib.suppress(TelegramError):  # only stops the spinner: never lose the press
        await _call(context.bot, "answerCallbackQuery", callback_query_id=query.id)
    pressed = query.message.message_id if query.message else None
    await _handle(update, context, Press(query.data or ""), pressed)


async def on_member(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The resident blocked the bot (or left the group): no more announcements."""
    change = update.my_chat_member
    if change is None:
        return
    if change.new_chat_member.status in (ChatMember.BANNED, ChatMember.LEFT):
        await _service(context).broadcasts.unsubscribe(change.chat.id)


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
    if isinstance(err, NotCommitted) and isinstance(update, Update):
        context.bot_data[UNCOMMITTED].add(update.update_id)  # intake delivers it again
    if isinstance(err, Forbidden) and isinstance(update, Update) and update.effective_chat:
        # Blocked while we were answering: unsubscribed, and nothing more to send.
        with contextlib.suppress(Exception):
            await _service(context).broadcasts.unsubscribe(update.effective_chat.id)
        return
    if isinstance(update, Update) and update.effective_chat is not None:
        user = update.effective_user
        locale = negotiate(user.language_code if user else None)
        with contextlib.suppress(Exception):
            await context.bot.send_message(update.effective_chat.id, message(locale, "error"))


async def _purge_forever(service: ConversationService, retention: dt.timedelta) -> None:
    while True:
        # The service's clock, which stamped the rows (TODAY moves both).
        removed = await service.store.purge(service.clock() - retention)
        if removed:
            log.info("purged %d idle conversations", removed)
        await asyncio.sleep(PURGE_EVERY.total_seconds())


async def _resend_forever(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Send replies committed but never sent: their process died, or Telegram could not be
    reached then. Younger ones are still being sent by whoever committed them."""
    service: ConversationService = app.bot_data["service"]
    context = ContextTypes.DEFAULT_TYPE(app)
    while True:
        try:
            for chat_id, item in await service.unsent(RESEND_AFTER):
                with contextlib.suppress(BadRequest, Forbidden):
                    async with service.store.chat(chat_id):
                        await send(context, chat_id, [item])
        except Exception as err:  # the database or Telegram may be away for a while
            log.warning("resending unsent replies failed: %s", type(err).__name__)
        await asyncio.sleep(RESEND_AFTER.total_seconds())


async def _reminders_forever(service: ConversationService, settings: Settings) -> None:
    while True:
        try:
            await reminders.queue_due(service, service.clock(), settings.reminder_hour)
        except Exception as err:  # the database may be away for a while: try next time
            log.warning("scheduled reminders failed: %s", type(err).__name__)
        await asyncio.sleep(REMINDERS_EVERY.total_seconds())


class ProgressReporter:
    """Broadcast progress in the chat of the staff member who sent it: one message edited
    as it goes, and a new one at the end (an edit does not notify)."""

    def __init__(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        self.app = app
        self.messages: dict[int, int] = {}  # broadcast id -> the progress message's id

    async def __call__(self, progress: Progress) -> None:
        chat = progress.notify_chat
        if chat is None:
            return
        service: ConversationService = self.app.bot_data["service"]
        worker: DeliveryWorker = self.app.bot_data["worker"]
        text = progress_text(progress, Context(service.library, service.clock()))
        shown = self.messages.get(progress.broadcast_id)
        async with worker.interactive(chat):
            if shown is not None and progress.active:
                with contextlib.suppress(BadRequest):  # "not modified"
                    await self.app.bot.edit_message_text(
                        text, chat_id=chat, message_id=shown, parse_mode=ParseMode.HTML
                    )
                return
            sent = await self.app.bot.send_message(chat, text, parse_mode=ParseMode.HTML)
        if progress.active:
            self.messages[progress.broadcast_id] = sent.message_id
        else:
            self.messages.pop(progress.broadcast_id, None)


async def _at_start(call: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """A start-up call to the Bot API, made again after a network error: a dropped
    connection must not keep the bot from starting (seen once on a loaded CI host)."""
    for attempt in range(attempts - 1):
        try:
            return await call()
        except NetworkError:
            log.warning("Bot API unreachable at start-up, trying again (%d)", attempt + 1)
            await asyncio.sleep(0.5 * 2**attempt)
    return await call()


def _settle() -> None:
    """What start-up loaded (the notices, the templates, the FAQ index and jieba's
    dictionary: some 150,000 objects) lives as long as the process: kept out of the garbage
    collector's sight from now on, so its full collections stop walking them all (12 % of
    an update's CPU before: 162 -> 16 µs of collection per update, bench_updates.py)."""
    gc.collect()
    gc.freeze()


def build_application(settings: Settings) -> Application[Any, Any, Any, Any, Any, Any]:
    assert settings.bot_token is not None
    store = Store(settings.database_url)

    async def broadcast_send(chat_id: int, text: str) -> None:
        await app.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML)

    async def post_init(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await store.init(migrate=settings.migrates_at_start)
        service = ConversationService(store, default_library(), clock=settings.now)
        app.bot_data["service"] = service
        app.bot_data["staff_ids"] = settings.staff_ids
        # jieba and the FAQ index take a couple of seconds: build them before the first question.
        warmup = asyncio.get_running_loop().run_in_executor(None, default_index)
        warmup.add_done_callback(lambda _: _settle())
        app.bot_data["faq_warmup"] = warmup
        for code, locale in MENU_LANGUAGES.items():
            menus = functools.partial(app.bot.set_my_commands, language_code=code)
            await _at_start(functools.partial(menus, command_menu(locale)))
            for staff_id in settings.staff_ids:
                staff = command_menu(locale, staff=True)
                await _at_start(
                    functools.partial(menus, staff, scope=BotCommandScopeChat(staff_id))
                )
        pacer = Pacer(
            settings.broadcast_per_second,
            settings.broadcast_per_chat_interval,
            # PostgreSQL: every process sends, the overall limit is kept in the database.
            slots=service.broadcasts if service.broadcasts.shares_the_rate else None,
        )
        worker = DeliveryWorker(
            service.broadcasts,
            broadcast_send,
            pacer,
            concurrency=settings.broadcast_concurrency,
            on_progress=ProgressReporter(app),
            progress_interval=settings.broadcast_progress_interval,
            lease=settings.broadcast_lease_seconds,
        )
        app.bot_data["worker"] = worker
        service.on_queued = lambda _: worker.wake()
        app.bot_data["tasks"] = [
            asyncio.create_task(
                _purge_forever(service, dt.timedelta(hours=settings.retention_hours))
            ),
            asyncio.create_task(_reminders_forever(service, settings)),
            asyncio.create_task(_resend_forever(app)),
        ]
        if settings.broadcast_worker:
            app.bot_data["delivery"] = asyncio.create_task(worker.run())

    async def post_shutdown(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        for task in app.bot_data.get("tasks", []):
            task.cancel()
        worker: DeliveryWorker | None = app.bot_data.get("worker")
        delivery: asyncio.Task[None] | None = app.bot_data.get("delivery")
        if worker is not None and delivery is not None:
            worker.stop()  # the sends in flight finish and their outcome is recorded
            with contextlib.suppress(Exception):
                await asyncio.wait_for(delivery, timeout=10)
        await store.close()

    app = (
        ApplicationBuilder()
        .token(settings.bot_token.get_secret_value())
        .base_url(settings.telegram_base_url)
        .request(metrics.CountingRequest(connection_pool_size=256))  # the builder's default
        .get_updates_request(metrics.CountingRequest())
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .updater(None)  # bot.intake confirms updates only once they are committed
        .build()
    )
    app.add_handler(CommandHandler([name for name, _ in COMMANDS + STAFF_COMMANDS], on_command))
    app.add_handler(MessageHandler(filters.COMMAND, on_command))
    app.add_handler(CallbackQueryHandler(on_button))
    app.add_handler(ChatMemberHandler(on_member, ChatMemberHandler.MY_CHAT_MEMBER))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, on_text))
    app.add_handler(MessageHandler(~filters.TEXT & ~filters.StatusUpdate.ALL, on_other))
    app.add_error_handler(on_error)
    return app


def run(settings: Settings, sockets: Sequence[socket.socket] | None = None) -> None:
    asyncio.run(serve(build_application(settings), settings, sockets))

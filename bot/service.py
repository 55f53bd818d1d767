"""One event for one chat: load the state, handle it, do the replies' actions, commit, and
only then answer."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import replace
from zoneinfo import ZoneInfo

from bot.broadcast_store import BroadcastStore
from bot.storage import Store
from conversations import announcements, broadcast
from conversations.context import Context
from conversations.i18n import negotiate
from conversations.resident import handle
from conversations.state import (
    Action,
    Audience,
    BroadcastStatus,
    CancelBroadcast,
    Event,
    QueueBroadcast,
    Refused,
    Relanguage,
    Reminders,
    Reply,
    State,
    Subscribe,
    Unsubscribe,
)
from policies.loader import Library
from policies.models import Notice

ATTEMPTS = 5
log = logging.getLogger(__name__)


def request_key(actor: int, key: str) -> str:
    """A queued broadcast's key: who asked, and for what (QueueBroadcast.key)."""
    return f"{actor}:{key}"


class ConcurrentUpdateError(RuntimeError):
    pass


class ConversationService:
    def __init__(
        self,
        store: Store,
        library: Library,
        timezone: str = "Asia/Shanghai",
        clock: Callable[[], dt.datetime] | None = None,
        broadcasts: BroadcastStore | None = None,
    ) -> None:
        self.store = store
        self.library = library
        zone = ZoneInfo(timezone)
        self.clock = clock or (lambda: dt.datetime.now(zone))
        self.broadcasts = broadcasts or BroadcastStore(store)
        self.on_queued: Callable[[int], None] | None = None  # e.g. wake the delivery worker

    async def process(
        self,
        chat_id: int,
        event: Event,
        update_id: int | None = None,
        language_code: str | None = None,
        staff: bool = False,
        user_id: int | None = None,
    ) -> list[Reply]:
        """Handle ``event``; ``user_id`` (who sent it) defaults to the chat, as in a private chat.

        Actions run before the state is saved and are idempotent (an upsert, a broadcast
        keyed by its preview), so a retry after a lost race, or an update delivered again
        after a crash, does each once.
        """
        for _ in range(ATTEMPTS):
            state, version = await self.store.load(chat_id)
            state = state or State()
            if (
                update_id is not None
                and state.last_update_id is not None
                and update_id <= state.last_update_id
            ):
                # Telegram delivers again what was not confirmed before a crash: answer
                # as we did, without moving the conversation a second time.
                return state.last_replies
            context = Context(self.library, self.clock(), language_code, staff=staff)
            new, replies = handle(state, event, context)
            if any(r.action is not None for r in replies):
                context = replace(context, locale=new.lang or negotiate(language_code))
                actor = chat_id if user_id is None else user_id
                replies = [await self._complete(r, chat_id, actor, context) for r in replies]
            if update_id is not None:
                new.last_update_id, new.last_replies = update_id, replies
            if await self.store.save(chat_id, new, version):
                return replies
        raise ConcurrentUpdateError("the conversation kept changing while being handled")

    async def _complete(self, reply: Reply, chat_id: int, actor: int, ctx: Context) -> Reply:
        if reply.action is None:
            return reply
        outcome = await self._do(reply.action, chat_id, actor, ctx)
        return broadcast.complete(reply, outcome, ctx)

    async def _do(self, action: Action, chat_id: int, actor: int, ctx: Context) -> object:
        store = self.broadcasts
        if isinstance(action, Subscribe):
            await store.subscribe(chat_id, action.region, action.language)
            return None
        if isinstance(action, Unsubscribe):
            return await store.unsubscribe(chat_id)
        if isinstance(action, Relanguage):
            await store.set_language(chat_id, action.language)
            return None
        if isinstance(action, Refused):
            # The user id is what an audit of refused attempts is for; nothing else is kept.
            log.warning("refused /%s from user %d: not on the staff list", action.command, actor)
            await store.record_audit(actor, "refused", f"command={action.command}")
            return None
        if isinstance(action, Audience):
            return await store.audience(action.region)
        if isinstance(action, QueueBroadcast):
            return await self.queue(action, actor, chat_id, ctx.locale)
        if isinstance(action, CancelBroadcast):
            await store.cancel(action.broadcast_id, actor)
            return await store.progress(action.broadcast_id)
        if isinstance(action, BroadcastStatus):
            return await store.recent(broadcast.STATUS_SHOWN)
        assert isinstance(action, Reminders)
        region, enabled = action.region, action.enabled
        if region is not None and enabled is not None and self.library.for_region(region):
            await store.set_reminders(region, enabled, actor)
        return await store.reminder_settings()

    async def queue(
        self,
        action: QueueBroadcast,
        actor: int,
        notify_chat: int | None,
        language: str,
        notice: Notice | None = None,
    ) -> broadcast.Progress | None:
        """Render the announcement in each subscriber language and queue it (from the
        region's latest notice unless ``notice`` is given); None when it does not apply."""
        notice = notice or self.library.latest(action.region)
        if notice is None:
            return None
        try:  # between preview and confirm the day may have passed the deadline it counts to
            announcements.context(action.template, notice, action.day)
        except announcements.Unavailable:
            return None

        def text(locale: str) -> str:
            return announcements.render(action.template, notice, locale, action.day)

        broadcast_id = await self.broadcasts.queue_broadcast(
            action.template,
            action.region,
            actor,
            text,
            request_key=request_key(actor, action.key),
            notify_chat=notify_chat,
            notify_language=language,
        )
        if self.on_queued is not None:
            self.on_queued(broadcast_id)
        return await self.broadcasts.progress(broadcast_id)

"""One event for one chat: load the state, handle it, do the replies' actions, commit, and
only then answer."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import replace
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from bot.broadcast_store import BroadcastStore
from bot.storage import Change, Store
from conversations import announcements, broadcast
from conversations.context import Context
from conversations.i18n import negotiate
from conversations.resident import handle
from conversations.state import (
    SEEN_KEPT,
    Action,
    Audience,
    BroadcastStatus,
    CancelBroadcast,
    Command,
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


class Outgoing(BaseModel):
    """A reply in the outbox: sent, then deleted (``id`` is its row)."""

    id: int = 0
    reply: Reply
    pressed: int | None = None  # the message whose button was pressed: the reply may edit it


def _seen(state: State, update_id: int) -> bool:
    """Handled already? Older than everything remembered counts as handled too."""
    seen = state.seen
    return update_id in seen or (len(seen) >= SEEN_KEPT and update_id < min(seen))


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
        language_code: str | None = None,
        staff: bool = False,
        user_id: int | None = None,
    ) -> list[Reply]:
        """Handle ``event`` and return the replies (the console; nothing is redelivered)."""
        replies: list[Reply] = []
        await self._apply(chat_id, event, None, language_code, staff, user_id, into=replies)
        return replies

    async def receive(
        self,
        chat_id: int,
        event: Event,
        update_id: int,
        language_code: str | None = None,
        staff: bool = False,
        user_id: int | None = None,
        pressed: int | None = None,
    ) -> list[Outgoing]:
        """Handle Telegram update ``update_id`` once, however often it is delivered, and
        return what the chat's outbox holds: its replies, after any an earlier update left
        unsent. The caller sends each in order and then calls :meth:`sent`.

        ``pressed`` is the message whose button was pressed (a reply may edit it).
        """
        written: dict[str, Outgoing] = {}
        outbox = await self._apply(
            chat_id, event, update_id, language_code, staff, user_id, pressed, written=written
        )
        return [
            # This update's own replies need not be parsed back from what was just written.
            (written.get(reply) or Outgoing.model_validate_json(reply)).model_copy(
                update={"id": row_id}
            )
            for row_id, reply in outbox
        ]

    async def sent(self, outgoing: Outgoing) -> None:
        await self.store.sent(outgoing.id)

    async def unsent(self, age: dt.timedelta) -> list[tuple[int, Outgoing]]:
        """Replies committed more than ``age`` ago and not sent, claimed for sending now:
        (chat id, reply)."""
        now = self.clock()
        return [
            (chat_id, Outgoing.model_validate_json(reply).model_copy(update={"id": row_id}))
            for row_id, chat_id, reply in await self.store.claim_stale(now - age, now)
        ]

    async def _apply(
        self,
        chat_id: int,
        event: Event,
        update_id: int | None,
        language_code: str | None,
        staff: bool,
        user_id: int | None,
        pressed: int | None = None,
        into: list[Reply] | None = None,
        written: dict[str, Outgoing] | None = None,
    ) -> list[tuple[int, str]]:
        """Handle ``event`` and commit; the chat's outbox after the commit (with
        ``update_id``; else the replies go to ``into``, and not to the outbox). ``written``
        gets the replies put in the outbox, by their JSON.

        ``user_id`` (who sent it) defaults to the chat, as in a private chat.

        Actions run before the state is saved and are idempotent (an upsert, a broadcast
        keyed by its preview), so a retry after a lost race, or an update delivered again
        after a crash, does each once.
        """
        actor = chat_id if user_id is None else user_id
        # Most updates need nothing but their chat's row: loaded, handled and committed in
        # one trip to the database (Store.turn). Replies with an action (a subscription, a
        # broadcast) wait for it on the event loop and are committed after.
        handled: list[tuple[State, int, State, list[Reply], Context]] = []

        def decide(loaded: State | None, version: int) -> Change | None:
            state = loaded or State()
            if update_id is not None and _seen(state, update_id):
                # Delivered again (a crash before it was confirmed): its replies are in the
                # outbox until sent; handling it again would move the conversation twice.
                return None
            context = Context(self.library, self.clock(), language_code, staff=staff)
            new, replies = handle(state, event, context)
            handled.append((state, version, new, replies, context))
            if any(r.action is not None for r in replies):
                return None
            return self._change(state, new, replies, update_id, pressed, written)

        for _ in range(ATTEMPTS):
            handled.clear()
            pending = await self.store.turn(chat_id, decide)
            if not handled:
                return pending or []  # seen already: what its outbox still holds
            state, version, new, replies, context = handled[0]
            if any(r.action is not None for r in replies):
                context = replace(context, locale=new.lang or negotiate(language_code))
                replies = [await self._complete(r, chat_id, actor, context) for r in replies]
                change = self._change(state, new, replies, update_id, pressed, written)
                pending = await self.store.commit(chat_id, new, version, change.replies)
            if pending is not None:
                if isinstance(event, Command) and event.name == "cancel":
                    await self.store.scrub()  # what was cleared leaves the write-ahead log too
                if into is not None:
                    into.extend(replies)
                return pending
        raise ConcurrentUpdateError("the conversation kept changing while being handled")

    @staticmethod
    def _change(
        state: State,
        new: State,
        replies: list[Reply],
        update_id: int | None,
        pressed: int | None,
        written: dict[str, Outgoing] | None = None,
    ) -> Change:
        """What to commit: with ``update_id`` (Telegram), the update is remembered as seen
        and the replies go to the outbox (and to ``written``); without (the console), they
        are returned only."""
        if update_id is None:
            return Change(new)
        new.seen = [*state.seen, update_id][-SEEN_KEPT:]
        outgoing = [Outgoing(reply=r, pressed=pressed) for r in replies]
        encoded = [o.model_dump_json() for o in outgoing]
        if written is not None:
            written.update(zip(encoded, outgoing, strict=True))
        return Change(new, encoded)

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

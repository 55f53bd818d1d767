"""One event for one chat: load the state, handle it, commit, and only then answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

from bot.storage import Store
from conversations.resident import Context, handle
from conversations.state import Event, Reply, State
from policies.loader import Library

ATTEMPTS = 5


class ConcurrentUpdateError(RuntimeError):
    pass


class ConversationService:
    def __init__(
        self,
        store: Store,
        library: Library,
        timezone: str = "Asia/Shanghai",
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.store = store
        self.library = library
        zone = ZoneInfo(timezone)
        self.clock = clock or (lambda: dt.datetime.now(zone))

    async def process(
        self,
        chat_id: int,
        event: Event,
        update_id: int | None = None,
        language_code: str | None = None,
        staff: bool = False,
    ) -> list[Reply]:
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
            if update_id is not None:
                new.last_update_id, new.last_replies = update_id, replies
            if await self.store.save(chat_id, new, version):
                return replies
        raise ConcurrentUpdateError("the conversation kept changing while being handled")

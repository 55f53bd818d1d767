"""Scheduled deadline reminders: on the days ``announcements.reminder_dates`` gives (7 days
and 1 day before a payment window the notice says ends), for the regions staff switched on
with /reminders, from ``hour`` o'clock China time.

A reminder is keyed by notice, window and days, so however often this runs (every minute,
after a restart, from two processes) each goes out once. One missed on its day (the bot
was down all day) is not sent late: a day-late "1 day left" would be wrong.
"""

from __future__ import annotations

import datetime as dt
import logging

from bot.service import ConversationService, request_key
from conversations import announcements
from conversations.i18n import DEFAULT
from conversations.state import QueueBroadcast

log = logging.getLogger(__name__)
SCHEDULER = 0  # the audit's actor for broadcasts nobody queued by hand


async def queue_due(service: ConversationService, now: dt.datetime, hour: int = 9) -> list[int]:
    """Queue the reminders due at ``now`` (China time); the ids of the broadcasts queued."""
    if now.hour < hour:
        return []
    queued = []
    settings = await service.broadcasts.reminder_settings()
    for region, enabled in sorted(settings.items()):
        if not enabled:
            continue
        for notice in service.library.for_region(region):
            for reminder in announcements.due_reminders(notice, now.date()):
                key = f"reminder:{notice.id}:{reminder.window}:{reminder.days}"
                if await service.broadcasts.queued(request_key(SCHEDULER, key)):
                    continue
                action = QueueBroadcast(
                    template=reminder.template, region=region, day=now.date(), key=key
                )
                progress = await service.queue(action, SCHEDULER, None, DEFAULT, notice)
                if progress is not None:
                    log.info(
                        "queued reminder #%d (%s, %d days before %s) to %d subscribers",
                        progress.broadcast_id,
                        region,
                        reminder.days,
                        reminder.end,
                        progress.total,
                    )
                    queued.append(progress.broadcast_id)
    return queued

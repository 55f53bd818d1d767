"""What a conversation remembers between updates, and what goes in and comes out of it.

All of it is plain pydantic data, so the bot stores it as JSON per chat and any driver
(Telegram, the console, tests) can feed events and show replies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from conversations.timeline import Timeline


class Step(StrEnum):
    IDLE = "idle"
    REGION = "region"
    BIRTH = "birth"
    CATEGORIES = "categories"
    TIER = "tier"
    PAYMENT = "payment"
    COVER = "cover"  # years without coverage, only where the notice's rules use them
    QUOTED = "quoted"
    FAQ = "faq"


# The order questions are asked in; TIER is skipped where the region has no tiers, COVER
# where its notices do not use years without coverage or they would not change the quote.
QUESTIONS = (Step.REGION, Step.BIRTH, Step.CATEGORIES, Step.TIER, Step.PAYMENT, Step.COVER)


class State(BaseModel):
    model_config = ConfigDict(extra="ignore")

    step: Step = Step.IDLE
    lang: str | None = None  # chosen with /lang; else the chat client's language
    region: str | None = None
    birth_date: dt.date | None = None
    # A birth typed as a year or a month is the span birth_date … birth_until; the day is
    # asked only where it changes the quote. A birth typed without a year waits here (MM-DD).
    birth_until: dt.date | None = None
    birth_month_day: str | None = None
    newborn: bool = False  # said the child was just born: the birth question says so
    categories: list[str] = []
    categories_done: bool = False
    # Group words typed before the region was known ("低保户"), matched once it is.
    pending_groups: list[str] = []
    tier: int | None = None
    payment_date: dt.date | None = None
    payment_from: dt.date | None = None  # a month typed for payment: payment_from … payment_date
    years_without_cover: int | None = None  # 断保年数, where asked
    resume: Step | None = None  # /faq in the middle of a quote: the question to come back to
    faq_region: str | None = None  # the region of the last FAQ answer, for the next question
    faq_question: str | None = None  # waiting for the region to be chosen
    draft: Draft | None = None  # staff: the broadcast being prepared
    updated_at: dt.datetime | None = None
    # The latest Telegram updates handled (at most SEEN_KEPT), so an update delivered
    # again is not handled twice, while one that arrives after a newer one still is.
    seen: list[int] = []


SEEN_KEPT = 100


class Draft(BaseModel):
    """A broadcast a staff member is preparing: template, then region, then preview."""

    template: str | None = None
    region: str | None = None
    # When the preview was shown: with the staff member's id it keys the broadcast, so a
    # confirm pressed twice (or delivered again after a crash) queues it once.
    previewed: str | None = None


# Side effects a reply needs (the database: subscriptions, broadcasts). ``handle`` stays
# pure: it returns the reply with its action, the service does the action and completes
# the reply's text from the outcome (conversations.broadcast.complete).


class Subscribe(BaseModel):
    kind: Literal["subscribe"] = "subscribe"
    region: str
    language: str


class Unsubscribe(BaseModel):
    kind: Literal["unsubscribe"] = "unsubscribe"


class Relanguage(BaseModel):
    """The chat chose another language: announcements follow it (if subscribed)."""

    kind: Literal["relanguage"] = "relanguage"
    language: str


class Audience(BaseModel):
    """How many subscribers, per language, a broadcast to ``region`` would reach."""

    kind: Literal["audience"] = "audience"
    template: str
    region: str


class QueueBroadcast(BaseModel):
    kind: Literal["queue"] = "queue"
    template: str
    region: str
    day: dt.date  # the day it goes out: the deadline template counts down from it
    key: str  # see Draft.previewed


class CancelBroadcast(BaseModel):
    kind: Literal["cancel"] = "cancel"
    broadcast_id: int


class BroadcastStatus(BaseModel):
    kind: Literal["status"] = "status"


class Reminders(BaseModel):
    """List the regions' scheduled reminders; with ``region``, switch that one first."""

    kind: Literal["reminders"] = "reminders"
    region: str | None = None
    enabled: bool | None = None


class Refused(BaseModel):
    """Someone not on the staff list tried a staff command: audited."""

    kind: Literal["refused"] = "refused"
    command: str


Action = Annotated[
    Subscribe
    | Unsubscribe
    | Relanguage
    | Audience
    | QueueBroadcast
    | CancelBroadcast
    | BroadcastStatus
    | Reminders
    | Refused,
    Field(discriminator="kind"),
]


class Button(BaseModel):
    label: str
    data: str


class Reply(BaseModel):
    html: str  # Telegram's HTML subset: <b>, <i>, <code>; user text escaped
    buttons: list[list[Button]] = []
    edit: bool = False  # replace the message whose button was pressed
    action: Action | None = None  # done by the service before the reply is shown
    # A picture drawn by the adapter (Telegram: sendPhoto with ``html`` as caption; the
    # console: a PNG file); where none can be drawn, ``html`` alone is shown.
    photo: Timeline | None = None
    # An FAQ question the notices of this region do not answer (counted, never the text).
    unanswered: str | None = None


State.model_rebuild()


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Press:
    data: str


@dataclass(frozen=True)
class Command:
    name: str  # without the slash, e.g. "start"


Event = Text | Press | Command

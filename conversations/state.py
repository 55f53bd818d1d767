"""What a conversation remembers between updates, and what goes in and comes out of it.

All of it is plain pydantic data, so the bot stores it as JSON per chat and any driver
(Telegram, the console, tests) can feed events and show replies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Step(StrEnum):
    IDLE = "idle"
    REGION = "region"
    BIRTH = "birth"
    CATEGORIES = "categories"
    TIER = "tier"
    PAYMENT = "payment"
    QUOTED = "quoted"
    FAQ = "faq"


# The order questions are asked in; TIER is skipped where the region has no tiers.
QUESTIONS = (Step.REGION, Step.BIRTH, Step.CATEGORIES, Step.TIER, Step.PAYMENT)


class State(BaseModel):
    model_config = ConfigDict(extra="ignore")

    step: Step = Step.IDLE
    lang: str | None = None  # chosen with /lang; else the chat client's language
    region: str | None = None
    birth_date: dt.date | None = None
    categories: list[str] = []
    categories_done: bool = False
    tier: int | None = None
    payment_date: dt.date | None = None
    faq_region: str | None = None  # the region of the last FAQ answer, for the next question
    faq_question: str | None = None  # waiting for the region to be chosen
    updated_at: dt.datetime | None = None
    # The last Telegram update handled and what was answered, so an update delivered
    # again after a crash is answered the same way instead of being handled twice.
    last_update_id: int | None = None
    last_replies: list[Reply] = []


class Button(BaseModel):
    label: str
    data: str


class Reply(BaseModel):
    html: str  # Telegram's HTML subset: <b>, <i>, <code>; user text escaped
    buttons: list[list[Button]] = []
    edit: bool = False  # replace the message whose button was pressed


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

"""What every handler of the conversation is given: the notices, the clock, the language,
whether the user is staff; and the navigation buttons the handlers share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from conversations.i18n import DEFAULT, Localizer, localizer
from conversations.render import message
from conversations.state import Button, Reply, State
from policies.loader import Library
from policies.text import N_

BACK, RESTART, EDIT = N_("⬅️ 返回"), N_("🔄 重新开始"), N_("✏️ 修改某项")
ASK = N_("❓ 问问题")


@dataclass(frozen=True)
class Context:
    library: Library
    now: dt.datetime  # timezone-aware, China time
    language_code: str | None = None  # as the chat client reports it, e.g. zh-hant
    locale: str = DEFAULT  # set by handle(): the user's choice, else the client's language
    staff: bool = False  # staff also see the full clause text and annex tables; may broadcast

    @property
    def today(self) -> dt.date:
        return self.now.date()

    @property
    def loc(self) -> Localizer:
        return localizer(self.locale)

    def gettext(self, msgid: str) -> str:
        return self.loc.gettext(msgid)

    def say(self, macro: str, **kwargs: object) -> str:
        return message(self.locale, macro, **kwargs)

    def button(self, label: str, data: str) -> Button:
        return Button(label=self.gettext(label), data=data)

    def nav(self, *which: str) -> list[Button]:
        data = {BACK: "back", RESTART: "restart", EDIT: "edit", ASK: "faq"}
        return [self.button(label, data[label]) for label in which]


Result = tuple[State, list[Reply]]

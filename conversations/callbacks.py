"""The one parser of button data (Telegram's callback_data).

Anyone can send a callback query with any data, not only the buttons we offered, so
every press is checked here before a handler looks at it: a known shape with a value
that fits, or None (the handlers then answer as for a button from an old keyboard).

Shapes (``name`` and ``name:value``): restart, back, faq, edit, edit:<question>,
lang:<locale>, region:<id>, cat:<id>, tier:<number>, cover:<years>, pay:today,
pay:<YYYY-MM-DD>, faqregion:<id>, sub:<region>, qd:<detail of a quote>; staff:
bc:t:<template>, bc:r:<region>, bc:l:<locale>, bc:send, bc:quit, bc:stop:<broadcast id>,
rem:on:<region>, rem:off:<region>. A new kind of button needs its shape here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conversations.i18n import LOCALES
from conversations.state import QUESTIONS

MAX_BYTES = 64  # Telegram's limit for callback_data
_ID = r"[a-z0-9_]{1,40}"  # region, category and template ids
_VALUE = {
    "edit": "|".join(step.value for step in QUESTIONS),
    "lang": "|".join(LOCALES),
    "region": _ID,
    "cat": _ID,
    "tier": r"[0-9]{1,3}",
    "cover": r"[0-9]{1,2}",  # years without coverage
    "pay": r"today|[0-9]{4}-[0-9]{2}-[0-9]{2}",
    "faqregion": _ID,
    "sub": _ID,
    "qd": _ID,
    "bc:t": _ID,
    "bc:r": _ID,
    "bc:l": "|".join(LOCALES),
    "bc:stop": r"[0-9]{1,18}",  # a BIGINT id: 18 digits always fit
    "rem:on": _ID,
    "rem:off": _ID,
}
_BARE = frozenset({"restart", "back", "faq", "edit", "bc:send", "bc:quit"})
_SHAPE = re.compile(
    "(?P<name>"
    + "|".join(sorted(map(re.escape, _VALUE), key=len, reverse=True))
    + "):(?P<value>.+)"
)


@dataclass(frozen=True, slots=True)
class Callback:
    name: str  # e.g. "cat", "bc:stop", "restart"
    value: str = ""  # what follows the name, "" for a bare name

    @property
    def number(self) -> int:
        """The value of tier and bc:stop, whose shape guarantees the digits."""
        return int(self.value)


def parse(data: str) -> Callback | None:
    """The press as a :class:`Callback`, or None when it is not one we could have sent."""
    if len(data.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return None
    if data in _BARE:
        return Callback(data)
    found = _SHAPE.fullmatch(data)
    if found is None:
        return None
    name, value = found["name"], found["value"]
    # ASCII only: "²".isdigit() is true, and int() of it raises.
    if not value.isascii() or re.fullmatch(_VALUE[name], value) is None:
        return None
    return Callback(name, value)

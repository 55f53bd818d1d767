"""Reading the dates people type.

Accepted: 2023-03-10, 2023/3/10, 2023.3.10, 20230310, 2023年3月10日 and 今天 (today).
"""

from __future__ import annotations

import datetime as dt
import re

_SEPARATED = re.compile(
    r"^\s*(\d{4})\s*[-/.．年]\s*(\d{1,2})\s*[-/.．月]\s*(\d{1,2})\s*[日号]?\s*$"
)
_COMPACT = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})\s*$")
_TODAY = {"今天", "今日", "today", "今天缴费", "現在", "现在"}
_FULLWIDTH = str.maketrans("０１２３４５６７８９／－", "0123456789/-")


class DateError(ValueError):
    """Not a date: ``reason`` is ``format`` (unreadable) or ``impossible`` (no such day)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_date(text: str, today: dt.date) -> dt.date:
    text = text.strip().translate(_FULLWIDTH)
    if text.lower() in _TODAY:
        return today
    match = _SEPARATED.match(text) or _COMPACT.match(text)
    if match is None:
        raise DateError("format")
    year, month, day = (int(g) for g in match.groups())
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise DateError("impossible") from None

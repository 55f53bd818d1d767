"""Finding the dates in what people type, the way they type them.

A message may hold a full date ("1956年3月5日", "1956 3 5", "5 March 1956", "19560305"), a
year and month ("1956年3月"), a year ("56年的"), a month and day with no year ("十月八号"),
a day relative to the bot's clock ("明天", "下周一", "月底", "年底前", "next month") or an
18- or 15-digit resident ID number. Each is a :class:`Mention`: the earliest and latest
day it can mean, so "1956年" is the span 1956-01-01…1956-12-31 and the conversation asks
for the day only where the day changes the answer.

The text is expected in :func:`policies.normalize.normalize` form (half-width digits,
Simplified characters, lower case).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

Precision = Literal["day", "month", "year", "span"]


@dataclass(frozen=True)
class Mention:
    first: dt.date
    last: dt.date  # == first for one day
    start: int  # where it stands in the text
    end: int
    precision: Precision = "day"
    relative: bool = False  # counted from the clock: a span means its latest day for payment
    year_missing: bool = False  # month (and day) only; ``first``/``last`` use the clock's year
    id_number: bool = False  # read from a resident ID number
    keyword: str | None = None  # what the relative words meant, e.g. "下个月", for the reply

    @property
    def exact(self) -> bool:
        return self.first == self.last


@dataclass(frozen=True)
class Impossible:
    """A date-shaped mention that is no day, e.g. 2023-02-30, or an ID with a bad checksum."""

    start: int
    end: int
    id_number: bool = False


# -- Chinese numerals -------------------------------------------------------------------

_CN_DIGITS = {c: i for i, c in enumerate("〇一二三四五六七八九")} | {"零": 0, "两": 2}
_CN_RUN = re.compile(
    r"[〇零一二两三四五六七八九十]+(?=\s*(?:年|月|日|号|周岁|岁|天|个月|个星期|个礼拜|周|星期|点))"
    r"|(?<=月)[一二三四五六七八九十]+"
)


def _cn_number(run: str) -> str:
    """一九五六 → 1956 (digit by digit), 二十三 → 23, 十 → 10, 十一 → 11."""
    if "十" not in run:
        return "".join(str(_CN_DIGITS[c]) for c in run)
    tens, _, ones = run.partition("十")
    value = (_CN_DIGITS.get(tens[-1], 1) if tens else 1) * 10 + (
        _CN_DIGITS.get(ones[0], 0) if ones else 0
    )
    return str(value)


def arabic(text: str) -> str:
    """Chinese numerals that count years, months, days or ages as Arabic digits."""
    return _CN_RUN.sub(lambda m: _cn_number(m.group()), text)


# -- resident ID numbers (GB 11643) -------------------------------------------------------

_ID18 = re.compile(r"(?<![0-9])[1-9]\d{5}(?:18|19|20)\d{2}\d{2}\d{2}\d{3}[0-9x](?![0-9a-z])")
_ID15 = re.compile(r"(?<![0-9])[1-9]\d{5}\d{2}\d{2}\d{2}\d{3}(?![0-9])")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10x98765432"


def id_checksum_ok(number: str) -> bool:
    total = sum(int(d) * w for d, w in zip(number[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == number[17]


def without_id_numbers(text: str) -> str:
    """The text (NFKC) with every resident ID number cut out, before it is echoed or kept."""
    text = unicodedata.normalize("NFKC", text)
    return _ID15.sub("", re.compile(_ID18.pattern, re.IGNORECASE).sub("", text))


def _id_birth(number: str) -> dt.date | None:
    digits = number[6:14] if len(number) == 18 else "19" + number[6:12]
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


# -- the patterns -------------------------------------------------------------------------

_MONTHS_EN = {
    name: i
    for i in range(1, 13)
    for name in (calendar.month_name[i].lower(), calendar.month_abbr[i].lower())
}
_MON = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_ORD = r"(?:st|nd|rd|th)?"
_WEEKDAYS = {"1": 0, "一": 0, "2": 1, "二": 1, "3": 2, "三": 2, "4": 3, "四": 3, "5": 4, "五": 4}
_WEEKDAYS |= {"6": 5, "六": 5, "7": 6, "日": 6, "天": 6}
_WEEKDAYS_EN = {
    d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday"))
} | {"saturday": 5, "sunday": 6}

_Y = r"(?<![\d.])(\d{4}|\d{2})"
_PATTERNS: list[tuple[str, str]] = [
    # kind, pattern (named groups y, m, d, mon)
    ("ymd", _Y + r"\s*(?:年|[-/.])\s*(\d{1,2})\s*(?:月|[-/.])\s*(\d{1,2})\s*(?:日|号)?(?![\d])"),
    ("ymd", r"(?<!\d)(\d{4})\s+(\d{1,2})\s+(\d{1,2})(?!\d)"),
    ("ymd", r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)"),
    ("dmy_en", r"(?<!\d)(\d{1,2})" + _ORD + r"\s*(?:of\s+)?" + _MON + r",?\s*(\d{4}|\d{2})(?!\d)"),
    ("mdy_en", _MON + r"\s*(\d{1,2})" + _ORD + r",?\s*(\d{4})(?!\d)"),
    ("numeric", r"(?<![\d.])(\d{1,2})/(\d{1,2})/(\d{4})(?!\d)"),
    ("ym", _Y + r"\s*年\s*(\d{1,2})\s*月(?:份)?(?!\s*\d)"),
    ("ym", r"(?<![\d.])(\d{4})\s*[-/.]\s*(\d{1,2})(?![\d./-])"),
    ("my_en", _MON + r",?\s*(\d{4})(?!\d)"),
    ("md", r"(?<![\d.])(\d{1,2})\s*月\s*(\d{1,2})\s*(?:日|号)?(?!\d)"),
    ("d", r"(?<![\d./])(\d{1,2})\s*(?:日|号)(?!\d)"),  # "8号": the next 8th
    ("d", r"\bthe\s+(\d{1,2})(?:st|nd|rd|th)\b"),
    ("md_en", _MON + r"\s*(\d{1,2})" + _ORD + r"(?![\d:])"),
    ("dm_en", r"(?<!\d)(\d{1,2})" + _ORD + r"\s*(?:of\s+)?" + _MON),
    ("y", r"(?<![\d.])((?:19|20)\d{2})\s*(?:年(?:份)?)?(?![\d.%])"),
    ("y", r"(?<![\d.])(\d{2})\s*年(?!\s*(?:代|前|后|以|内|多|左右|底|末|间|了|\d))"),
    ("m", r"(?<![\d.])(\d{1,2})\s*月(?:份)?(?!\s*\d)"),
    ("m_en", r"\b(?:in\s+)" + _MON + r"(?!\s*\d)"),
]
_COMPILED = [(kind, re.compile(p)) for kind, p in _PATTERNS]


def _year(text: str, today: dt.date) -> int:
    """Two-digit years: the latest year ending so that is not after next year."""
    year = int(text)
    if len(text) == 2:
        year += 2000 if year <= (today.year + 1) % 100 else 1900
    return year


def _month_span(year: int, month: int) -> tuple[dt.date, dt.date]:
    return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])


# -- relative dates -----------------------------------------------------------------------

_Rel = Callable[[re.Match[str], dt.date], tuple[dt.date, dt.date]]


def _days(n: int) -> _Rel:
    def span(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
        day = today + dt.timedelta(days=n)
        return day, day

    return span


def _n_days(sign: int) -> _Rel:
    def span(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
        day = today + dt.timedelta(days=sign * int(m.group(1)))
        return day, day

    return span


def _n_weeks(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
    day = today + dt.timedelta(weeks=int(m.group(1)))
    return day, day


def _weekday(weeks_ahead: int | None, english: bool = False) -> _Rel:
    def span(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
        key = m.group(1)
        target = _WEEKDAYS_EN[key] if english else _WEEKDAYS[key]
        if weeks_ahead is None:  # "周五": the next such day, today included
            day = today + dt.timedelta(days=(target - today.weekday()) % 7)
        else:
            monday = today - dt.timedelta(days=today.weekday()) + dt.timedelta(weeks=weeks_ahead)
            day = monday + dt.timedelta(days=target)
        return day, day

    return span


def _week(weeks_ahead: int) -> _Rel:
    def span(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
        monday = today - dt.timedelta(days=today.weekday()) + dt.timedelta(weeks=weeks_ahead)
        return max(monday, today) if weeks_ahead == 0 else monday, monday + dt.timedelta(days=6)

    return span


def _month(months_ahead: int, part: str = "all") -> _Rel:
    def span(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
        index = today.year * 12 + today.month - 1 + months_ahead
        first, last = _month_span(index // 12, index % 12 + 1)
        if part == "early":
            last = first.replace(day=10)
        elif part == "end" and months_ahead == 0:
            first = today
        elif part == "end":
            first = last
        return first, last

    return span


def _months_ago(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
    return _month(-int(m.group(1)))(m, today)


def _age(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
    """ "67岁": born after this day 68 years ago and not after this day 67 years ago."""
    age = int(m.group(1))
    latest = _years_before(today, age)
    return _years_before(today, age + 1) + dt.timedelta(days=1), latest


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _year_end(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
    return today, dt.date(today.year, 12, 31)


_WD = r"([1-7一二三四五六日天])"
_WK = r"(?:周|星期|礼拜)"
_WD_EN = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday)"


def _month_end(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
    """ "11月底": the last day of the next such month."""
    month = int(m.group(1))
    year = today.year + (month < today.month)
    last = _month_span(year, month)[1]
    return last, last


def _yearly(month: int, day: int) -> _Rel:
    def span(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
        this = dt.date(today.year, month, day)
        day_ = this if this >= today else this.replace(year=today.year + 1)
        return day_, day_

    return span


def _weekend(m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date]:
    saturday = today + dt.timedelta(days=(5 - today.weekday()) % 7)
    return max(today, saturday - dt.timedelta(days=1) if today.weekday() == 6 else saturday), (
        today if today.weekday() == 6 else saturday + dt.timedelta(days=1)
    )


_RELATIVE: list[tuple[str, _Rel]] = [
    (r"(\d{1,2})\s*月(?:底|末|最后一天)", _month_end),
    (r"双十一", _yearly(11, 11)),
    (r"双十二", _yearly(12, 12)),
    (r"大后天", _days(3)),
    (r"后天|后儿个?|day after tomorrow", _days(2)),
    (r"明天|明日|明儿个?|tomorrow", _days(1)),
    (r"今天|今日|今儿个?|today|马上|right now|right away|现在(?=就|去|交|缴|办)", _days(0)),
    (r"(\d{1,2})\s*(?:个)?(?:星期|礼拜|周)(?:以后|之后|后)|in\s+(\d{1,2})\s+weeks?", _n_weeks),
    (r"in\s+a\s+week|a\s+week\s+from\s+(?:now|today)", _days(7)),
    (r"(?:这|本|这个)?周末|this\s+weekend|the\s+weekend|weekend", _weekend),
    (r"前天|day before yesterday", _days(-2)),
    (r"昨天|昨日|yesterday", _days(-1)),
    (r"(\d{1,3})\s*天(?:以后|之后|后)|in\s+(\d{1,3})\s+days?", _n_days(1)),
    (r"(\d{1,3})\s*天(?:以前|之前|前)|(\d{1,3})\s+days?\s+ago", _n_days(-1)),
    (r"下下(?:个)?" + _WK + _WD, _weekday(2)),
    (r"下(?:个)?" + _WK + _WD, _weekday(1)),
    (r"next\s+" + _WD_EN, _weekday(1, english=True)),
    (r"(?:这|本|这个)" + _WK + _WD, _weekday(0)),
    (r"this\s+" + _WD_EN, _weekday(0, english=True)),
    (r"上(?:个)?" + _WK + _WD, _weekday(-1)),
    (_WK + _WD, _weekday(None)),
    (r"(?:on\s+)?" + _WD_EN, _weekday(None, english=True)),
    (r"下(?:个)?(?:周|星期|礼拜)|next week", _week(1)),
    (r"(?:这|本|这个)(?:周|星期|礼拜)|this week", _week(0)),
    (r"上(?:个)?(?:周|星期|礼拜)|last week", _week(-1)),
    (r"下(?:个)?月(?:底|末)|end of next month", _month(1, "end")),
    (r"下(?:个)?月初|early next month|beginning of next month", _month(1, "early")),
    (r"下(?:个)?月|next month", _month(1)),
    (r"(?:这|本|这个)?月(?:底|末)|end of (?:the |this )?month", _month(0, "end")),
    (r"(?:这|本|这个)月|this month", _month(0)),
    (r"上(?:个)?月|last month", _month(-1)),
    (r"(\d{1,2})\s*个月(?:以前|之前|前)|(\d{1,2})\s+months?\s+ago", _months_ago),
    (r"(\d{1,3})\s*(?:周岁|岁)|(\d{1,3})\s*(?:years?|yrs?)\s*old", _age),
    (
        r"(?:今年)?年(?:底|末|内)(?:以前|之前|前)?|今年内|年前"
        r"|(?:before|by)\s+the\s+end\s+of\s+(?:the|this)\s+year|end of (?:the|this) year",
        _year_end,
    ),
]
_RELATIVE_COMPILED = [(re.compile(p), f) for p, f in _RELATIVE]
# Any of them, to skip the 34 searches at once in most messages (a typed date has none).
_ANY_RELATIVE = re.compile("|".join(f"(?:{p})" for p, _ in _RELATIVE))
_YEAR_WORDS = {"今年": 0, "明年": 1, "去年": -1, "this year": 0, "next year": 1, "last year": -1}
_YEAR_WORD = re.compile(
    r"(今年|明年|去年|this year|next year|last year)\s*(?=\d{1,2}\s*月|" + _MON + ")"
)


def find(text: str, today: dt.date) -> tuple[list[Mention], list[Impossible]]:
    """Every date mention in ``text`` (normalised), left to right, none overlapping."""
    text = arabic(text)
    taken: list[tuple[int, int]] = []
    found: list[Mention] = []
    bad: list[Impossible] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in taken)

    for pattern, id_len in ((_ID18, 18), (_ID15, 15)):
        for m in pattern.finditer(text):
            if not free(*m.span()):
                continue
            taken.append(m.span())
            number = m.group()
            born = _id_birth(number)
            if born is None or (id_len == 18 and not id_checksum_ok(number)):
                bad.append(Impossible(*m.span(), id_number=True))
            else:
                found.append(Mention(born, born, *m.span(), id_number=True))
    for pattern, rel in _RELATIVE_COMPILED if _ANY_RELATIVE.search(text) else ():
        for hit in pattern.finditer(text):
            if not free(*hit.span()):
                continue
            groups = [g for g in hit.groups() if g is not None]
            shim = _Groups(hit, groups)
            first, last = rel(shim, today)  # type: ignore[arg-type]
            taken.append(hit.span())
            precision: Precision = "day" if first == last else "span"
            found.append(
                Mention(first, last, *hit.span(), precision, relative=True, keyword=hit.group())
            )
    shift = {m.end(): _YEAR_WORDS[m.group(1)] for m in _YEAR_WORD.finditer(text)}
    for kind, pattern in _COMPILED:
        for hit in pattern.finditer(text):
            if not free(*hit.span()):
                continue
            mention = _absolute(kind, hit, today, shift)
            if mention is None:
                continue
            taken.append(hit.span())
            if isinstance(mention, Impossible):
                bad.append(mention)
            else:
                found.append(mention)
    found.sort(key=lambda m: m.start)
    return _joined(found, text), bad


def _joined(found: list[Mention], text: str) -> list[Mention]:
    """ "81年的 10月20号": a year and, just after it, a month and day are one date."""
    out: list[Mention] = []
    for m in found:
        prev = out[-1] if out else None
        gap = text[prev.end : m.start] if prev else ""
        if prev and prev.precision == "year" and m.year_missing and re.fullmatch(r"[\s的,]*", gap):
            try:
                day = m.first.replace(year=prev.first.year)
                last = m.last.replace(year=prev.first.year)
            except ValueError:
                out.append(m)
                continue
            out[-1] = replace(prev, first=day, last=last, end=m.end, precision=m.precision)
        else:
            out.append(m)
    return out


class _Groups:
    """A match whose ``group(1)`` is its first group that matched (alternatives in one pattern)."""

    def __init__(self, match: re.Match[str], groups: list[str]) -> None:
        self._match, self._groups = match, groups

    def group(self, index: int = 0) -> str:
        return self._match.group() if index == 0 else self._groups[index - 1]


def _absolute(
    kind: str, hit: re.Match[str], today: dt.date, shift: dict[int, int]
) -> Mention | Impossible | None:
    g = hit.groups()
    span = hit.span()
    year_missing = False
    try:
        if kind in ("ymd", "dmy_en", "mdy_en", "numeric"):
            if kind == "ymd":
                y, mo, d = _year(g[0], today), int(g[1]), int(g[2])
            elif kind == "dmy_en":
                y, mo, d = _year(g[2], today), _MONTHS_EN[g[1]], int(g[0])
            elif kind == "mdy_en":
                y, mo, d = int(g[2]), _MONTHS_EN[g[0]], int(g[1])
            else:
                a, b, y = int(g[0]), int(g[1]), int(g[2])
                if a <= 12 and b <= 12 and a != b:
                    return None  # 3/5/1956: March or May? not guessed
                mo, d = (a, b) if b > 12 or a <= 12 else (b, a)
            day = dt.date(y, mo, d)
            return Mention(day, day, *span)
        if kind in ("ym", "my_en"):
            y = _year(g[0], today) if kind == "ym" else int(g[1])
            mo = int(g[1]) if kind == "ym" else _MONTHS_EN[g[0]]
            first, last = _month_span(y, mo)
            return Mention(first, last, *span, "month")
        if kind == "y":
            y = _year(g[0], today)
            if not 1900 <= y <= today.year + 2:
                return None
            return Mention(dt.date(y, 1, 1), dt.date(y, 12, 31), *span, "year")
        if kind == "d":
            if int(g[0]) >= today.day:
                day = today.replace(day=int(g[0]))
            else:
                index = today.year * 12 + today.month  # next month
                day = dt.date(index // 12, index % 12 + 1, int(g[0]))
            return Mention(day, day, *span)
        year = today.year + shift.get(span[0], 0)
        year_missing = span[0] not in shift
        if kind in ("md", "md_en", "dm_en"):
            if kind == "md":
                mo, d = int(g[0]), int(g[1])
            elif kind == "md_en":
                mo, d = _MONTHS_EN[g[0]], int(g[1])
            else:
                mo, d = _MONTHS_EN[g[1]], int(g[0])
            day = dt.date(year, mo, d)
            return Mention(day, day, *span, year_missing=year_missing)
        mo = int(g[0]) if kind == "m" else _MONTHS_EN[g[0]]
        first, last = _month_span(year, mo)
        return Mention(first, last, *span, "month", year_missing=year_missing)
    except (ValueError, KeyError, IndexError):
        return Impossible(*span)


def next_on_or_after(mention: Mention, today: dt.date) -> Mention:
    """A payment date with no year: the next such day (or month), today included."""
    if not mention.year_missing:
        return mention
    year = mention.first.year + (mention.last < today)
    return with_year(mention, year)


def latest_not_after(mention: Mention, today: dt.date) -> Mention:
    """A birth with no year, where the words say it was recent: the last such day passed."""
    if not mention.year_missing:
        return mention
    return with_year(mention, mention.first.year - (mention.first > today))


def with_year(mention: Mention, year: int) -> Mention:
    try:
        first = mention.first.replace(year=year)
        last = mention.last.replace(year=year, day=1)
        last = last.replace(day=min(mention.last.day, calendar.monthrange(year, last.month)[1]))
    except ValueError:  # 29 February
        first = last = mention.first.replace(year=year, day=28)
    return replace(mention, first=first, last=last, year_missing=False)

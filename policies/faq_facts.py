"""What a question says about the asker: dates, identity, tier, and what is asked.

The FAQ answers a question that carries the asker's facts ("2022年10月生的孩子11月去办要交多少")
with a quote for those facts, and ranks entries by whether they are about the same
situation (a month after 30 June, a baby older than 90 days, 脱贫 but "不是低保"). Input is
the normalised question (``policies.normalize``: Simplified, half-width, lower case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from policies.models import Notice

_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8}
_CN_DIGITS |= {"九": 9, "十": 10, "十一": 11, "十二": 12}
_MONTH_CN = "十二|十一|十|一|二|三|四|五|六|七|八|九"
_DATE = re.compile(
    rf"(?:((?:20)?\d\d)\s*年\s*)?(1[0-2]|0?[1-9]|{_MONTH_CN})\s*月\s*份?"
    r"(?:\s*(3[01]|[12]\d|0?[1-9])\s*[日号])?"
)
_ISO = re.compile(r"(20\d\d)\s*[-/.]\s*(1[0-2]|0?[1-9])\s*[-/.]\s*(3[01]|[12]\d|0?[1-9])")
_MONTHS_EN: tuple[str, ...] = ("january", "february", "march", "april", "may", "june")
_MONTHS_EN += ("july", "august", "september", "october", "november", "december")
_DATE_EN = re.compile(
    r"\b(" + "|".join(m[:3] + r"[a-z]*" for m in _MONTHS_EN) + r")\b\.?(?:\s+(\d{1,2}))?"
    r"(?:,?\s+(20\d\d))?"
)
_MONTH_END = re.compile(r"\s*(?:底|末)")
_AGE = re.compile(rf"(\d+|{_MONTH_CN})\s*(个多?月|天)(?:大|了|多|才)")
_AFTER = re.compile(r"\s*(?:底|末)?\s*(?:以后|之后|过后|后)")
_BIRTH_AFTER = re.compile(r"^[^，,。？?；;]{0,4}?(出生|生的|生了|生下|生)")
_PAY_AFTER = re.compile(r"^[^，,。？?；;]{0,6}?(交|缴|办|参保|登记|去)")
_BIRTH_EN = re.compile(r"(born|birth|baby)\W+(?:\w+\W+){0,2}$")
_PAY_EN = re.compile(r"(pay|paid|paying|register|registered|enrol|enroll|in)\W+(?:\w+\W+){0,2}$")
_TIER = re.compile(r"(?:第\s*)?(一|二|1|2)\s*档|tier\s*(1|2|one|two)|(first|second)\s+tier")
_NEGATION = ("不是", "没有", "不属于", "不算", "非", "没评上", "没")
_ONLY = ("光是", "只是", "单纯", "仅是", "就是", "只有")


@dataclass(frozen=True)
class Date:
    """A date as asked: the year or day may be missing."""

    year: int | None
    month: int
    day: int | None


@dataclass(frozen=True)
class Facts:
    birth: Date | None = None
    payment: Date | None = None
    categories: frozenset[str] = frozenset()
    negated: frozenset[str] = frozenset()
    negated_words: tuple[str, ...] = ()  # "不是低保": left out of the words searched for
    only: bool = False  # "光是脱贫": this identity and no other
    tier: int | None = None
    newborn: bool | None = None  # True: a newborn; False: a baby older than the newborn days
    late: bool = False  # paying after the regular period (补交, 错过, 集中期后)
    intents: frozenset[str] = field(default_factory=frozenset)

    @property
    def personal(self) -> bool:
        """Whether the question carries facts a quote can be made for."""
        return self.birth is not None or self.payment is not None


def _next(date: Date) -> Date:
    """The first day after a date as asked (the next month where no day is given)."""
    if date.day is not None and date.day < 28:
        return Date(date.year, date.month, date.day + 1)
    if date.month == 12:
        return Date(date.year + 1 if date.year else None, 1, 1)
    return Date(date.year, date.month + 1, 1)


def _older(text: str, newborn_days: int) -> bool:
    """An age past the newborn days: "4个多月", "100天", "半岁"."""
    for m in _AGE.finditer(text):
        count = int(m[1]) if m[1].isdigit() else _month(m[1])
        days = count * 30 if "月" in m[2] else count
        if days > newborn_days:
            return True
    return False


def _month(token: str) -> int:
    return int(token) if token.isdigit() else _CN_DIGITS[token]


def _dates(text: str) -> list[tuple[int, int, Date]]:
    found: list[tuple[int, int, Date]] = []
    for m in _ISO.finditer(text):
        found.append((m.start(), m.end(), Date(int(m[1]), int(m[2]), int(m[3]))))
    for m in _DATE.finditer(text):
        if any(lo <= m.start() < hi for lo, hi, _ in found):
            continue
        year = (2000 + int(m[1]) % 100) if m[1] else None  # "22年" is 2022
        month = _month(m[2])
        day = int(m[3]) if m[3] else None
        date, end = Date(year, month, day), m.end()
        after = _AFTER.match(text, m.end())
        if after is not None or text[max(0, m.start() - 2) : m.start()] == "过了":
            date, end = _next(date), (after.end() if after else end)  # "6月底以后", "过了2月28号"
        elif month_end := _MONTH_END.match(text, m.end()):
            date, end = Date(year, month, 31), month_end.end()  # "11月底": the month's last day
        found.append((m.start(), end, date))
    for m in _DATE_EN.finditer(text):
        month = next(i for i, name in enumerate(_MONTHS_EN, 1) if name.startswith(m[1][:3]))
        if m[1] == "may" and not (m[2] or m[3]):
            continue  # the verb, most of the time
        day = int(m[2]) if m[2] and int(m[2]) <= 31 else None
        date = Date(int(m[3]) if m[3] else None, month, day)
        before = text[max(0, m.start() - 12) : m.start()]
        if re.search(r"\bafter (the )?$", before):
            date = _next(date)
        elif re.search(r"\b(late|end of|the end of)\s*$", before):
            date = Date(date.year, month, 31)
        found.append((m.start(), m.end(), date))
    return sorted(found, key=lambda f: f[0])


def _roles(text: str) -> tuple[Date | None, Date | None]:
    """(birth, payment): a date followed by 出生/生 is a birth, by 交/缴/办 a payment."""
    birth = payment = None
    for lo, hi, date in _dates(text):
        after, before = text[hi:], text[max(0, lo - 24) : lo]
        if _BIRTH_AFTER.match(after) or _BIRTH_EN.search(before):
            birth = birth or date
        elif _PAY_AFTER.match(after) or _PAY_EN.search(before):
            payment = payment or date
    return birth, payment


def _categories(text: str, notice: Notice | None) -> tuple[set[str], set[str], list[str], bool]:
    if notice is None:
        return set(), set(), [], False
    spans: list[tuple[int, int, str]] = []
    for cat in notice.categories:
        for word in {cat.name, *cat.aliases}:
            start = text.find(word.lower())
            while start >= 0:
                spans.append((start, start + len(word), cat.id))
                start = text.find(word.lower(), start + 1)
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    chosen: set[str] = set()
    negated: set[str] = set()
    negated_words: list[str] = []
    only, end = False, -1
    for lo, hi, cat_id in spans:
        if lo < end:
            continue  # inside a longer name already taken
        end = hi
        before = text[max(0, lo - 4) : lo]
        cue = next((n for n in _NEGATION if before.endswith(n)), None)
        if cue is not None:
            negated.add(cat_id)
            negated_words.append(text[lo - len(cue) : hi])
            continue
        only = only or any(before.endswith(o) for o in _ONLY)
        chosen.add(cat_id)
    return chosen - negated, negated, negated_words, only


def read_facts(
    text: str,
    notice: Notice | None,
    intents: dict[str, list[str]],
    newborn_words: list[str],
    older_words: list[str],
    late_words: list[str],
) -> Facts:
    """The facts a normalised question states; ``notice`` gives the identity words."""
    birth, payment = _roles(text)
    chosen, negated, negated_words, only = _categories(text, notice)
    tier = None
    if m := _TIER.search(text):
        token = next(g for g in m.groups() if g)
        tier = 1 if token in ("一", "1", "one", "first") else 2
    newborn = None
    days = notice.newborn_days.amount if notice is not None else 90
    if any(w in text for w in older_words) or _older(text, days):
        newborn = False
    elif any(w in text for w in newborn_words):
        newborn = True
    asked = frozenset(name for name, forms in intents.items() if any(f in text for f in forms))
    return Facts(
        birth=birth,
        payment=payment,
        categories=frozenset(chosen),
        negated=frozenset(negated),
        negated_words=tuple(negated_words),
        only=only,
        tier=tier,
        newborn=newborn,
        late=any(w in text for w in late_words),
        intents=asked,
    )

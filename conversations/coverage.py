"""Years without coverage (断保年数), as residents say them, in three languages.

Asked only where a notice's waiting period depends on it (``Notice.uses_years_without_cover``)
and only when the quote would change. "断了两年" → 2, "去年没交" → 1, "前年和去年都没交" → 2,
"一直在交" / "第一次参保" / "never missed" / "first time" → 0, "2 years" → 2. Traditional
characters go through ``policies.normalize`` first.
"""

from __future__ import annotations

import re

from conversations.dates import arabic
from policies.normalize import normalize

_EN_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}
_EN_NUMBERS |= {"eight": 8, "nine": 9, "ten": 10, "a": 1}
# No gap: always paid, or never insured before (首次参保 counts no years, 五（二）'s wording).
_NONE = re.compile(
    r"没(?:有)?断|未断|不断|从没断|一直(?:在)?(?:交|缴|参保)|连续(?:参保|交|缴)|每年都(?:交|缴)"
    r"|第一次|首次|头一次|没有断保|^0$|^无$|^没有$"
    r"|never (?:missed|lapsed|stopped|broke)|no (?:gap|break)|always paid|every year"
    r"|first time|continuous|^none$|^no$|^zero$"
)
_LAST_YEAR = re.compile(r"去年(?:没|未|忘)|last year|missed a year|skipped a year")
_TWO_YEARS = re.compile(r"前年和去年|前年、去年|去年和前年|前年(?:起|开始)")
_COUNT = re.compile(
    r"(\d+)\s*(?:年|个年度)|(\d+|one|two|three|four|five|six|seven|eight|nine|ten|a)"
    r"\s*(?:years?|yrs?)\b"
)


def years_without_cover(text: str) -> int | None:
    """The number of years without coverage a message gives, or None."""
    said = arabic(normalize(text)).strip()
    said = re.sub(r"(?<![\d.])两(?=\s*年)", "2", said)
    if _TWO_YEARS.search(said):
        return 2
    found = _COUNT.search(said)
    if found:
        word = found.group(1) or found.group(2)
        return int(word) if word.isdigit() else _EN_NUMBERS[word]
    if _LAST_YEAR.search(said):
        return 1
    if _NONE.search(said):
        return 0
    if said.isdigit() and len(said) <= 2:
        return int(said)
    return None

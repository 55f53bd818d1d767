"""Translations and locale formatting for everything a person reads.

Catalogs live in ``locales/<locale>/LC_MESSAGES/messages.po`` (Babel). They are compiled
in memory the first time a locale is used, so a fresh clone needs no build step and a
``.po`` edit takes effect on the next start. Message ids are the canonical Simplified
Chinese; policy words (region, category, office names) are message ids too, taken from the
notice data by ``policies.i18n_extract``.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache, lru_cache
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.dates import format_date, format_skeleton
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

import locales
from policies.text import Msg, Param, Term, Terms, Yuan

LOCALES = ("zh_Hans", "zh_Hant", "en")
DEFAULT = "zh_Hans"
LOCALE_DIR = Path(locales.__file__).parent
LANGUAGE_NAMES = {"zh_Hans": "简体中文", "zh_Hant": "繁體中文", "en": "English"}

_HANT = re.compile(r"hant|-(hk|tw|mo)\b")
_CN_DIGITS = {c: str(i) for i, c in enumerate("〇一二三四五六七八九十")}
_CLAUSE_PART = re.compile(r"附件(\d+)|[一二三四五六七八九十]+|（|）|注")
_WHOLE = {"标题": "title", "文号": "document number", "前言": "preamble", "落款": "signature"}


def negotiate(language_code: str | None) -> str:
    """Telegram's ``language_code`` to one of LOCALES (zh-hant, zh-hk, zh-tw, zh-mo → zh_Hant)."""
    if not language_code:
        return DEFAULT
    code = language_code.lower().replace("_", "-")
    if code == "zh" or code.startswith("zh-"):
        return "zh_Hant" if _HANT.search(code) else "zh_Hans"
    return "en"


def catalog_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"


@cache
def translations(locale: str) -> Translations:
    with catalog_path(locale).open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buffer = BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain="messages")


def _cn_number(text: str) -> str:
    if text == "十":
        return "10"
    if text.startswith("十"):
        return "1" + _CN_DIGITS[text[1]]
    if text.endswith("十"):
        return _CN_DIGITS[text[0]] + "0"
    if "十" in text:
        return _CN_DIGITS[text[0]] + _CN_DIGITS[text[2]]
    return "".join(_CN_DIGITS[c] for c in text)


# Babel takes 30-60 µs a call, and a reply shows the same few notice dates and fees again
# and again (deadlines, first days of cover, standards): formatted once per locale.
@lru_cache(maxsize=4096)
def _long_date(day: dt.date, locale: str) -> str:
    return format_date(day, "long", locale=locale)


@lru_cache(maxsize=4096)
def _decimal(amount: int, locale: str) -> str:
    return format_decimal(amount, locale=locale)


class Localizer:
    """Gettext and Babel formatting for one locale."""

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else DEFAULT
        self.babel = Locale.parse(self.locale)
        self.translations = translations(self.locale)
        self.chinese = self.locale.startswith("zh")

    def gettext(self, msgid: str) -> str:
        return self.translations.gettext(msgid)

    def term(self, word: str | None) -> str:
        return self.gettext(word) if word else ""

    def terms(self, words: tuple[str, ...] | list[str]) -> str:
        return ("、" if self.chinese else ", ").join(self.term(w) for w in words)

    def date(self, day: dt.date | None, missing: str = "—") -> str:
        return missing if day is None else _long_date(day, self.locale)

    def monthday(self, day: dt.date) -> str:
        """3月5日 / March 5: a day whose year is not known."""
        return format_skeleton("MMMd", day, locale=self.babel)

    def money(self, amount: int | None) -> str:
        if amount is None:
            return self.gettext("通知未载明")
        number = _decimal(amount, self.locale)
        return f"{number}元" if self.chinese else f"¥{number}"

    def clause(self, clause: str) -> str:
        """Clause numbers as the reader writes them: 四（二）2 → 4(2)2, 附件2 → Annex 2."""
        if self.chinese:
            return clause
        if clause in _WHOLE:
            return _WHOLE[clause]

        def part(m: re.Match[str]) -> str:
            token = m.group(0)
            if m.group(1):
                return f"Annex {m.group(1)}"
            return {"（": "(", "）": ")", "注": " note"}.get(token) or _cn_number(token)

        return _CLAUSE_PART.sub(part, clause)

    def param(self, value: Param) -> str:
        if isinstance(value, Terms):
            return self.terms(value)
        if isinstance(value, Term):
            return self.term(value)
        if isinstance(value, Yuan):
            return self.money(int(value))
        if isinstance(value, dt.date):
            return self.date(value)
        return str(value)

    def msg(self, message: Msg) -> str:
        params = {k: self.param(v) for k, v in message.params.items()}
        return self.gettext(message.msgid).format(**params)


@cache
def localizer(locale: str) -> Localizer:
    return Localizer(locale)

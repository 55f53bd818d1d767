"""One canonical form for what people type, before anything is matched against it.

Residents write Simplified or Traditional Chinese, full-width or half-width digits and
letters, and paste zero-width characters from other apps. Every matcher (regions,
categories, dates, the FAQ) compares this form of the message with this form of its own
words, so "鳳山街道", "凤山街道" and "ＦＥＮＧＳＨＡＮ" meet.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Protocol

_INVISIBLE = re.compile("[\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff\x00-\x08\x0b-\x1f\x7f]")


class _Converter(Protocol):
    def convert(self, text: str) -> str: ...


@cache
def _t2s() -> _Converter:
    import opencc  # 15 ms, loaded on first use

    converter: _Converter = opencc.OpenCC("t2s")
    return converter


def to_simplified(text: str) -> str:
    """Traditional Chinese characters as Simplified ones; everything else unchanged."""
    if text.isascii():
        return text
    return _t2s().convert(text)


def normalize(text: str) -> str:
    """NFKC (full-width → half-width), no invisible characters, Simplified, lower case."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return to_simplified(text).lower()

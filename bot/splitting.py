"""Splitting a Telegram HTML text into messages Telegram accepts.

Telegram rejects a message over 4,096 characters, and one whose tags do not balance. A
part ends at a line break when one fits, else anywhere between two characters (never
inside a tag or an entity such as ``&amp;``); tags open at the cut are closed at the end
of the part and opened again at the start of the next, so every part is valid on its
own. Lengths count the HTML itself in UTF-16 code units, as Telegram counts, which is
never less than the text Telegram shows.
"""

from __future__ import annotations

import re

from telegram.constants import MessageLimit

_TOKEN = re.compile(r"<[^>]*>|&#?[0-9a-zA-Z]+;|.", re.DOTALL)
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)")


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _closing(stack: list[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _opening(stack: list[tuple[str, str]]) -> str:
    return "".join(tag for _, tag in stack)


def split_html(html: str, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """``html`` in parts of at most ``limit`` code units, each balanced on its own."""
    if _units(html) <= limit:
        return [html]
    parts: list[str] = []
    stack: list[tuple[str, str]] = []  # open tags: (name, the opening tag as written)
    current: list[str] = []  # tokens of the part being built, reopened tags first
    size = 0
    # Where the last line break in ``current`` is, and the tags open there.
    newline: tuple[int, list[tuple[str, str]]] | None = None

    def cut(at: int, open_tags: list[tuple[str, str]], skip: int) -> None:
        nonlocal current, size, newline
        text = "".join(current[:at]) + _closing(open_tags)
        if _shows_something(text):
            parts.append(text)
        rest = current[at + skip :]
        current = [_opening(open_tags), *rest]
        size = sum(map(_units, current))
        newline = None

    for token in _TOKEN.findall(html):
        tag = _TAG.match(token)
        after = list(stack)
        if tag is not None:
            closing, name = tag[1] == "/", tag[2].lower()
            if closing and after and after[-1][0] == name:
                after.pop()
            elif not closing:
                after.append((name, token))
        need = _units(token) + _units(_closing(after))
        if size + need > limit and current:
            if newline is not None:
                cut(newline[0], newline[1], skip=1)
            if size + need > limit:  # no line break, or the line after it is still too long
                cut(len(current), stack, skip=0)
        current.append(token)
        size += _units(token)
        stack = after
        if token == "\n":
            newline = (len(current) - 1, list(stack))
    text = "".join(current)
    if _shows_something(text):
        parts.append(text)
    return parts


def _shows_something(html: str) -> bool:
    """Telegram refuses a message with no visible text."""
    return bool(re.sub(r"<[^>]*>", "", html).strip())

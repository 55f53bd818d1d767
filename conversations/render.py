"""Rendering replies from the Jinja2 templates in ``locales/templates``, per locale."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from functools import cache, lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from conversations.i18n import localizer

ECHO_LIMIT = 30  # characters of what someone typed that a reply quotes back


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """A short excerpt of what someone typed, to quote back in a reply.

    Control and format characters (NUL, zero-width, bidirectional overrides) are dropped,
    whitespace runs become one space, and anything past ``limit`` becomes "…": a
    reply stays one message whatever was sent. Autoescape escapes the result.
    """
    kept = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co"))
    short = " ".join(kept.split())
    return short if len(short) <= limit else short[: limit - 1] + "…"


@cache
def environment(locale: str) -> Environment:
    loc = localizer(locale)
    env = Environment(
        loader=PackageLoader("locales", "templates"),
        # The templates ship with the code: looking for a newer file on every render (two
        # stat calls) cost more than rendering most prompts (benchmarks/bench_updates.py).
        auto_reload=False,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(loc.translations, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(
        money=loc.money,
        day=loc.date,
        monthday=loc.monthday,
        term=loc.term,
        terms=loc.terms,
        msg=loc.msg,
        clause=loc.clause,
        clip=clip,
        echo=echo,
    )
    return env


_SENTENCE_END = re.compile(r"[。；！？]")


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters of a passage, ending where a sentence ends, so a quote
    is never cut inside a title or a figure; "…" marks what was left out."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, limit)]
    if ends and ends[-1] >= limit // 3:
        return text[: ends[-1]] + "…"
    cut = text[:limit]
    if "“" in cut and "”" not in cut[cut.rindex("“") :]:
        cut = cut[: cut.rindex("“")]  # not inside a quoted title
    return cut.rstrip("，、；：（(“ ") + "…"


def render(locale: str, name: str, **context: Any) -> str:
    return environment(locale).get_template(name).render(**context).strip()


def message(locale: str, macro: str, /, **kwargs: Any) -> str:
    """One macro of messages.html.j2, e.g. ``message("en", "ask_birth", region_name="商洛市")``."""
    return template_macro(locale, "messages.html.j2", macro, **kwargs)


def template_macro(locale: str, template: str, macro: str, /, **kwargs: Any) -> str:
    key = _key(kwargs)
    if key is None:
        return _render_macro(locale, template, macro, kwargs)
    return _remembered(locale, template, macro, key)


def _render_macro(locale: str, template: str, macro: str, kwargs: dict[str, Any]) -> str:
    module = environment(locale).get_template(template).module
    return str(getattr(module, macro)(**kwargs)).strip()


# A macro's text depends on its arguments alone, and most prompts recur with the same few
# (a region's name, its categories): rendered once, they cost a lookup, not a Jinja2 and
# gettext rendering (benchmarks/bench_updates.py). Only plain values are keys; the type is
# part of the key, so 1 and 1.0 or True are not taken for one another.
_PLAIN = (str, int, float, bool, dt.date, dt.datetime, type(None))
Key = tuple[tuple[str, type, Any], ...]


def _key(kwargs: dict[str, Any]) -> Key | None:
    items = []
    for name, value in sorted(kwargs.items()):
        kind = type(value)
        if kind in (list, tuple):
            if not all(type(item) in _PLAIN for item in value):
                return None
            value = tuple((type(item), item) for item in value)
        elif kind not in _PLAIN:
            return None
        items.append((name, kind, value))
    return tuple(items)


@lru_cache(maxsize=4096)
def _remembered(locale: str, template: str, macro: str, key: Key) -> str:
    kwargs = {
        name: kind(item for _, item in value) if kind in (list, tuple) else value
        for name, kind, value in key
    }
    return _render_macro(locale, template, macro, kwargs)

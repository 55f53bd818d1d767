"""Rendering replies from the Jinja2 templates in ``locales/templates``."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template


def money(value: int | None) -> str:
    return "通知未载明" if value is None else f"{value}元"


def day(value: dt.date | None, missing: str = "—") -> str:
    return missing if value is None else f"{value.year}年{value.month}月{value.day}日"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("locales", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )
    env.filters["money"] = money
    env.filters["day"] = day
    return env


@cache
def _template(name: str) -> Template:
    return environment().get_template(name)


def render(name: str, **context: Any) -> str:
    return _template(name).render(**context).strip()


def message(macro: str, **kwargs: Any) -> str:
    """One macro of messages.html.j2, e.g. ``message("ask_birth", region_name="商洛市")``."""
    module = _template("messages.html.j2").module
    return str(getattr(module, macro)(**kwargs)).strip()

"""Rendering replies from the Jinja2 templates in ``locales/templates``, per locale."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from conversations.i18n import localizer


@cache
def environment(locale: str) -> Environment:
    loc = localizer(locale)
    env = Environment(
        loader=PackageLoader("locales", "templates"),
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
    )
    return env


def render(locale: str, name: str, **context: Any) -> str:
    return environment(locale).get_template(name).render(**context).strip()


def message(locale: str, macro: str, /, **kwargs: Any) -> str:
    """One macro of messages.html.j2, e.g. ``message("en", "ask_birth", region_name="商洛市")``."""
    return template_macro(locale, "messages.html.j2", macro, **kwargs)


def template_macro(locale: str, template: str, macro: str, /, **kwargs: Any) -> str:
    module = environment(locale).get_template(template).module
    return str(getattr(module, macro)(**kwargs)).strip()

"""Sentences the policy core hands to people, kept translatable.

The core stays free of gettext: it returns a message id (the canonical Simplified
Chinese, with ``{name}`` placeholders) and typed parameters. ``Msg.zh`` gives the Chinese
for the CLI and its JSON contract; ``conversations.i18n`` renders any locale, translating
``Term`` parameters (policy words: region, category, office names) through the catalogs.
``N_`` only marks message ids for extraction (``pybabel extract -k N_``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Union


def N_(msgid: str) -> str:
    return msgid


class Term(str):
    """A policy word as the notice writes it; translated where a catalog has it."""


class Terms(tuple[str, ...]):
    """Several policy words, shown as a list."""


class Yuan(int):
    """An amount of money in yuan."""


Param = Union[str, int, dt.date, Term, Terms, Yuan]  # noqa: UP007 (used at runtime)


@dataclass(frozen=True, slots=True)
class Msg:
    msgid: str
    params: dict[str, Param] = field(default_factory=dict)

    def zh(self) -> str:
        return self.msgid.format(**{k: _zh(v) for k, v in self.params.items()})


def _zh(value: Param) -> str:
    if isinstance(value, Terms):
        return "、".join(value)
    if isinstance(value, Yuan):
        return f"{int(value)}元"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)

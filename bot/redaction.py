"""Keeping what residents type out of the logs, whichever library logs it.

python-telegram-bot logs the raw update at CRITICAL when it cannot parse one (and at
DEBUG when asked), and an exception's text may quote a request. A filter on the root
handlers sees every record that reaches them, from any logger, and withholds the values
of the fields that hold what people wrote or who they are.
"""

from __future__ import annotations

import logging
import re

# Update fields with free text or a name: "text": "…" in JSON, 'text': '…' in a repr.
_FIELDS = (
    "text|caption|data|query|first_name|last_name|username|title|bio|phone_number"
    "|question|description|address|email"
)
_VALUE = re.compile(
    rf"""(?P<key>(?P<q>['"])(?:{_FIELDS})(?P=q)\s*:\s*)"""
    r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
)
WITHHELD = "'<withheld>'"


def redact(message: str) -> str:
    return _VALUE.sub(lambda m: m["key"] + WITHHELD, message)


class WithholdMessageText(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install() -> None:
    """Add the filter to every handler of the root logger (call after configuring them)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(WithholdMessageText())

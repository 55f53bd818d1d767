"""Keeps the gettext catalogs in step with the code, templates and notice data.

    .venv/bin/python scripts/i18n.py update   # extract, merge into each catalog, fill
    .venv/bin/python scripts/i18n.py check    # what `tests/test_i18n.py` enforces, as a list

``update`` runs ``pybabel extract`` and ``pybabel update``, then fills what is mechanical:
zh_Hans translations equal their (Simplified Chinese) message ids, and new zh_Hant entries
get OpenCC's Simplified→Traditional conversion, marked with a translator comment so a
reviewer can see what was generated. English is written by people; ``check`` lists what is
missing. The catalogs (.po) are committed; the bot compiles them in memory at start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ("zh_Hans", "zh_Hant", "en")
POT = ROOT / "locales" / "messages.pot"
GENERATED = "zh_Hant generated with OpenCC s2t"


def po_path(locale: str) -> Path:
    return ROOT / "locales" / locale / "LC_MESSAGES" / "messages.po"


def pybabel(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "pybabel"), *args], check=True, cwd=ROOT)


def update() -> None:
    pybabel(
        "extract",
        "-F",
        "babel.cfg",
        "-k",
        "N_",
        "--no-location",
        "--sort-output",
        "--omit-header",
        "-o",
        str(POT),
        ".",
    )
    for locale in LOCALES:
        if po_path(locale).exists():
            pybabel(
                "update",
                "-i",
                str(POT),
                "-d",
                "locales",
                "-l",
                locale,
                "--no-fuzzy-matching",
                "--ignore-obsolete",
            )
        else:
            pybabel("init", "-i", str(POT), "-d", "locales", "-l", locale)
    fill()


def fill() -> None:
    import opencc  # a development dependency: only needed when catalogs change

    s2t = opencc.OpenCC("s2t")
    for locale in ("zh_Hans", "zh_Hant"):
        path = po_path(locale)
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        for message in catalog:
            if not message.id or message.string:
                continue
            if locale == "zh_Hans":
                message.string = message.id
            else:
                message.string = s2t.convert(message.id)
                message.user_comments = [*message.user_comments, GENERATED]
        with path.open("wb") as fh:
            write_po(fh, catalog, omit_header=False, no_location=True)


def check() -> int:
    problems = 0
    for locale in LOCALES:
        with po_path(locale).open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        for message in catalog:
            if message.id and (not message.string or message.fuzzy):
                problems += 1
                print(f"{locale}: untranslated: {message.id!r}")
    return 1 if problems else 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "update"
    if command == "update":
        update()
    elif command == "fill":
        fill()
    else:
        sys.exit(check())

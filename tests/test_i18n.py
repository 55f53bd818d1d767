"""Every text a person reads, in every locale: catalogs complete, templates render."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import opencc
import pytest
import yaml
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from conversations.context import Context
from conversations.i18n import LOCALES, catalog_path, localizer, negotiate
from conversations.resident import handle
from conversations.state import Command, Event, Press, Reply, State, Text
from policies.loader import NOTICES_DIR, default_library, notice_files

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PLACEHOLDER = re.compile(r"%\(\w+\)s|\{\w+\}|</?\w+>")
CJK = re.compile(r"[\u3400-\u9fff]")
S2T = opencc.OpenCC("s2t")


def _catalog(locale: str) -> Any:
    with catalog_path(locale).open("rb") as fh:
        return read_po(fh, locale=locale)


def _extracted() -> set[str]:
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)  # type: ignore[no-untyped-call]
    found = extract_from_dir(
        str(ROOT), method_map, options_map, keywords={"_": None, "gettext": None, "N_": None}
    )
    return {message for _, _, message, _, _ in found if isinstance(message, str)}


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_translated_with_the_same_placeholders(locale: str) -> None:
    missing, broken = [], []
    for message in _catalog(locale):
        if not message.id:
            continue
        if not message.string or message.fuzzy:
            missing.append(message.id)
        elif sorted(PLACEHOLDER.findall(message.id)) != sorted(PLACEHOLDER.findall(message.string)):
            broken.append(message.id)
    assert not missing, f"{len(missing)} untranslated in {locale}, e.g. {missing[:3]}"
    assert not broken, f"placeholders differ in {locale}: {broken[:3]}"


def test_catalogs_hold_every_text_the_sources_mark() -> None:
    marked = _extracted()
    for locale in LOCALES:
        ids = {m.id for m in _catalog(locale) if m.id}
        assert marked <= ids, (
            f"{locale} lacks {sorted(marked - ids)[:5]}: run scripts/i18n.py update"
        )


def test_english_keeps_chinese_only_as_official_names_alongside() -> None:
    for message in _catalog("en"):
        if message.id:
            assert not CJK.search(_outside_quotes_and_brackets(message.string)), message.string


@pytest.mark.parametrize(
    ("code", "locale"),
    [
        ("zh-hans", "zh_Hans"),
        ("zh-cn", "zh_Hans"),
        ("zh", "zh_Hans"),
        ("zh-hant", "zh_Hant"),
        ("zh-hk", "zh_Hant"),
        ("zh-TW", "zh_Hant"),
        ("zh-mo", "zh_Hant"),
        ("en", "en"),
        ("en-US", "en"),
        ("ru", "en"),
        (None, "zh_Hans"),
        ("", "zh_Hans"),
    ],
)
def test_language_code_negotiation(code: str | None, locale: str) -> None:
    assert negotiate(code) == locale


def test_dates_money_and_clauses_follow_the_locale() -> None:
    day = dt.date(2024, 1, 1)
    assert localizer("zh_Hans").date(day) == "2024年1月1日"
    assert localizer("zh_Hant").date(day) == "2024年1月1日"
    assert localizer("en").date(day) == "January 1, 2024"
    assert localizer("zh_Hans").money(16901) == "16,901元"
    assert localizer("en").money(380) == "¥380"
    assert localizer("en").clause("四（二）2（1）") == "4(2)2(1)"
    assert localizer("en").clause("附件2") == "Annex 2"
    assert localizer("en").clause("六（十）") == "6(10)"
    assert localizer("zh_Hant").clause("四（二）") == "四（二）"


# -- whole conversations, read the way a resident would ----------------------------------


def _outside_quotes_and_brackets(text: str) -> str:
    """What remains once the notice's own words are removed: quotes and bracketed names."""
    previous = None
    while previous != text:  # innermost first: quotes within quotes, names within terms
        previous = text
        text = re.sub(r"“[^“”]*”|\([^()]*\)|（[^（）]*）|〔[^〔〕]*〕", "", text)
    return text


def _lines(replies: list[Reply]) -> list[str]:
    # Language buttons name each language in itself (简体中文, 繁體中文, English), as usual.
    text = "\n".join(
        r.html
        + "\n"
        + "\n".join(b.label for row in r.buttons for b in row if not b.data.startswith("lang:"))
        for r in replies
    )
    return [line for line in _outside_quotes_and_brackets(text).splitlines() if line.strip()]


def _foreign(locale: str, replies: list[Reply], simplified: list[Reply]) -> list[str]:
    """Lines in another language: any Chinese in English; in Traditional Chinese, a line
    left exactly as the Simplified rendering although it has characters to convert."""
    lines = _lines(replies)
    if locale == "en":
        return [line for line in lines if CJK.search(line)]
    if locale == "zh_Hant":
        hans = set(_lines(simplified))
        return [line for line in lines if line in hans and S2T.convert(line) != line]
    return []


def _cases() -> list[Any]:
    params = []
    for path in notice_files(NOTICES_DIR):
        cases = yaml.safe_load(path.with_name(path.stem + ".cases.yaml").read_text("utf-8"))
        region = path.stem.split("-")[0]
        for case in cases:
            if "error" not in case and case["input"].get("region", region) == region:
                params.append(pytest.param(region, case["input"], id=f"{path.stem}:{case['name']}"))
    return params


CLIENT_LANGUAGE = {"zh_Hans": "zh-hans", "zh_Hant": "zh-hant", "en": "en"}


def _converse(locale: str, events: list[Event]) -> list[Reply]:
    """The conversation as a Telegram client set to ``locale`` would see it."""
    state, shown = State(), []
    context = Context(default_library(), NOW, CLIENT_LANGUAGE[locale])
    for event in events:
        state, replies = handle(state, event, context)
        shown.extend(replies)
    return shown


def _assert_reads_in_every_locale(events: list[Event]) -> None:
    simplified = _converse("zh_Hans", events)
    for locale in ("zh_Hant", "en"):
        foreign = _foreign(locale, _converse(locale, events), simplified)
        assert not foreign, (locale, foreign)


@pytest.mark.parametrize(("region", "given"), _cases())
def test_quote_of_every_case_reads_in_every_locale(region: str, given: dict[str, Any]) -> None:
    events: list[Event] = [
        Command("start"),
        Press(f"region:{region}"),
        Text(given["birth_date"].isoformat()),
        *[Press(f"cat:{c}") for c in given.get("categories") or []],
        Press("cat:done") if given.get("categories") else Press("cat:none"),
    ]
    if given.get("tier"):
        events.append(Press(f"tier:{given['tier']}"))
    events.append(Text(given["date"].isoformat()))
    _assert_reads_in_every_locale(events)


def test_every_other_screen_reads_in_every_locale() -> None:
    screens: list[Event] = [
        Command("start"),
        Text("北京"),
        Press("region:fengshan"),
        Text("2023-02-30"),
        Text("abc"),
        Text("2099-01-01"),
        Text("1800-01-01"),
        Text("1990-01-01"),
        Text("我是老师"),
        Command("help"),
        Command("weather"),
        Command("nontext"),
        Press("region:dalate"),
        Press("cat:dibao"),
        Press("cat:done"),
        Text("三档"),
        Press("tier:2"),
        Text("1980-01-01"),
        Press("back"),
        Press("pay:today"),
        Press("edit"),
        Press("edit:payment"),
        Text("2023-08-01"),
        Command("lang"),
        Command("cancel"),
        Text("hello"),
    ]
    _assert_reads_in_every_locale(screens)


def test_lang_switches_and_is_remembered() -> None:
    ctx = Context(default_library(), NOW, "zh-hans")
    state, replies = handle(State(), Command("start"), ctx)
    assert "请选择您参保的地区" in replies[0].html
    state, replies = handle(state, Command("lang"), ctx)
    assert [b.data for row in replies[0].buttons for b in row] == [
        "lang:zh_Hans",
        "lang:zh_Hant",
        "lang:en",
    ]
    state, replies = handle(state, Press("lang:en"), ctx)
    assert state.lang == "en" and "region" in replies[0].html.lower()
    state, replies = handle(state, Command("cancel"), ctx)  # forgets answers, not the language
    state, replies = handle(state, Command("start"), ctx)
    assert state.lang == "en" and not CJK.search(_outside_quotes_and_brackets(replies[0].html))


def test_traditional_from_the_client_language() -> None:
    _, replies = handle(State(), Command("start"), Context(default_library(), NOW, "zh-hk"))
    assert "請選擇您參保的地區" in replies[0].html

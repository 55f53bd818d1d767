"""A new notice is data only: every notice directory under tests/data/ that has a data file
is quoted through the whole conversation in every language, every detail button answers,
and English shows the notice's untranslated words in Chinese but no untranslated interface
text. Years without coverage are understood as residents say them."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from notice_dirs import (
    DATA_DIR,
    case_files,
    category_ids,
    data_notice_dirs,
    library,
    load_cases,
    notice_for,
)

from conversations import announcements
from conversations.context import Context
from conversations.coverage import years_without_cover
from conversations.resident import handle
from conversations.state import Command, Event, Press, Reply, State, Text
from policies import models
from policies.faq import FaqIndex
from policies.i18n_extract import extract_notices
from policies.loader import NOTICES_DIR, notice_files
from policies.models import Notice

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
CLIENT = {"zh_Hans": "zh-hans", "zh_Hant": "zh-hant", "en": "en"}
CJK = re.compile(r"[\u3400-\u9fff]")
EXAMPLE = DATA_DIR / "example-2027"


@pytest.mark.parametrize(
    ("said", "years"),
    [
        ("断了两年", 2),
        ("去年没交", 1),
        ("前年和去年都没交", 2),
        ("断保3年", 3),
        ("一直在交", 0),
        ("第一次参保", 0),
        ("斷了兩年", 2),
        ("去年沒交", 1),
        ("never missed", 0),
        ("2 years", 2),
        ("three years", 3),
        ("missed last year", 1),
        ("first time", 0),
        ("我想问问", None),
    ],
)
def test_years_without_cover_as_people_say_them(said: str, years: int | None) -> None:
    assert years_without_cover(said) == years


def _data_cases() -> list[Any]:
    params = []
    for directory, path in case_files():
        if directory == NOTICES_DIR:
            continue
        for case in load_cases(path):
            if "error" not in case and "question" not in case["input"]:
                label = f"{directory.name}:{case['name']}"
                params.append(pytest.param(directory, path, case["input"], id=label))
    return params


def _converse(directory: Path, locale: str, events: list[Event]) -> tuple[State, list[Reply]]:
    """The conversation on the day of the payment typed (or NOW, if later): a birth in
    2027 is not in the future for someone paying then."""
    typed = [
        dt.date.fromisoformat(e.text)
        for e in events
        if isinstance(e, Text) and re.fullmatch(r"\d{4}-\d\d-\d\d", e.text)
    ]
    now = max([NOW, *(dt.datetime.combine(d, NOW.timetz()) for d in typed)])
    state, shown = State(), []
    context = Context(library(directory), now, CLIENT[locale])
    for event in events:
        state, replies = handle(state, event, context)
        shown.extend(replies)
    return state, shown


def _events(directory: Path, path: Path, given: dict[str, Any]) -> list[Event]:
    notice = notice_for(directory, path)
    chosen = sorted(category_ids(notice, given))
    events: list[Event] = [
        Command("start"),
        Press(f"region:{notice.region.id}"),
        Text(given["birth_date"].isoformat()),
        *[Press(f"cat:{c}") for c in chosen],
        Press("cat:done") if chosen else Press("cat:none"),
    ]
    if given.get("tier"):
        events.append(Press(f"tier:{given['tier']}"))
    events.append(Text(given["date"].isoformat()))
    return events


def _notice_words(directory: Path) -> list[str]:
    """What the notice data shows people, longest first (English may lag on them)."""
    words: list[str] = []
    for path in notice_files(directory):
        with path.open("rb") as fh:
            words += [text for _, _, text, _ in extract_notices(fh, None, None, {})]
    return sorted(set(words), key=len, reverse=True)


def _untranslated_interface(replies: list[Reply], words: list[str]) -> list[str]:
    text = "\n".join(
        r.html + "\n" + " ".join(b.label for row in r.buttons for b in row) for r in replies
    )
    for word in words:
        text = text.replace(word, "")
    text = re.sub(r"“[^“”]*”|〔[^〔〕]*〕|\([^()]*\)", "", text)  # quotes and clause marks
    return [line for line in text.splitlines() if CJK.search(line)]


@pytest.mark.parametrize(("directory", "path", "given"), _data_cases())
def test_every_case_is_quoted_in_every_language(
    directory: Path, path: Path, given: dict[str, Any]
) -> None:
    events = _events(directory, path, given)
    for locale in CLIENT:
        state, replies = _converse(directory, locale, events)
        if any(b.data.startswith("cover:") for row in replies[-1].buttons for b in row):
            years = given.get("years_without_cover") or 0
            state, more = _converse(directory, locale, [*events, Press(f"cover:{years}")])
            replies = more
        buttons = [b.data for row in replies[-1].buttons for b in row]
        assert state.step == "quoted", (locale, replies[-1].html)
        details = [d for d in buttons if d.startswith("qd:") and d != "qd:pic"]
        for detail in details:
            _, shown = _converse(
                directory, locale, [*events, *_cover(given, replies), Press(detail)]
            )
            assert shown[-1].html.strip(), detail
            replies = [*replies, shown[-1]]
        if locale == "en":
            assert not _untranslated_interface(replies, _notice_words(directory))


def _cover(given: dict[str, Any], replies: list[Reply]) -> list[Event]:
    asked = any(b.data.startswith("cover:") for r in replies for row in r.buttons for b in row)
    return [Press(f"cover:{given.get('years_without_cover') or 0}")] if asked else []


def _asked_cover(given: dict[str, Any]) -> tuple[bool, list[Reply]]:
    path = EXAMPLE / "cases.yaml"
    _, replies = _converse(EXAMPLE, "zh_Hans", _events(EXAMPLE, path, given))
    asked = any(b.data.startswith("cover:") for row in replies[-1].buttons for b in row)
    return asked, replies


def test_years_without_cover_asked_only_where_they_change_the_quote() -> None:
    adult = {"birth_date": dt.date(1980, 5, 1), "date": dt.date(2026, 11, 20)}
    asked, _ = _asked_cover(adult)
    assert asked  # 四（一）: broken coverage sets a waiting period in the concentrated period
    baby = {"birth_date": dt.date(2027, 2, 1), "date": dt.date(2027, 5, 2)}
    asked, replies = _asked_cover(baby)
    assert not asked  # 四（三）: a newborn within 90 days has no waiting period
    assert "2027年2月1日起" in replies[-1].html
    newly = {
        "birth_date": dt.date(1975, 3, 3),
        "date": dt.date(2027, 4, 15),
        "groups": ["低保对象", "新认定的困难群众"],
    }
    asked, _ = _asked_cover(newly)
    assert not asked


def test_typed_years_give_the_waiting_period_and_the_age_group() -> None:
    path = EXAMPLE / "cases.yaml"
    given = {"birth_date": dt.date(1980, 5, 1), "date": dt.date(2026, 11, 20)}
    events = [*_events(EXAMPLE, path, given), Text("断了两年")]
    _, replies = _converse(EXAMPLE, "zh_Hans", events)
    summary = replies[-1].html
    # 一（二）: 420 for 18-59; 四（一）（二）: 3 + 2 months from 1 January 2027.
    assert "劳动年龄内居民" in summary and "420元" in summary
    assert "等待期 5 个月" in summary and "2027年6月1日起" in summary
    _, english = _converse(EXAMPLE, "en", [*events[:-1], Text("2 years")])
    assert "June 1, 2027" in english[-1].html


def test_what_you_get_lists_benefit_levels_with_their_clauses() -> None:
    path = EXAMPLE / "cases.yaml"
    given = {
        "birth_date": dt.date(1980, 5, 1),
        "date": dt.date(2026, 11, 20),
        "groups": ["低保对象"],
    }
    events = [*_events(EXAMPLE, path, given), Press("cover:0"), Press("qd:get")]
    _, replies = _converse(EXAMPLE, "zh_Hans", events)
    shown = replies[-1].html
    assert "普通门诊统筹" in shown and "400元" in shown and "〔五（一）〕" in shown  # 五（一）
    assert "起付线：6,000元" in shown  # 五（二）: 12000, 低保对象 50 % lower
    assert "300,000元" in shown and "〔五（三）〕" in shown and "〔五（四）〕" in shown


def _data_notices() -> list[Any]:
    return [
        pytest.param(notice, id=notice.id)
        for directory in data_notice_dirs()
        for notice in library(directory).notices
    ]


@pytest.mark.parametrize("notice", _data_notices())
def test_every_announcement_a_data_notice_supports_renders(notice: Notice) -> None:
    supported = announcements.supported(notice)
    assert "collection_opens" in supported
    for template in supported:
        for locale in CLIENT:
            html = announcements.render(template, notice, locale)
            assert notice.benefit_year and str(notice.benefit_year) in html, (template, locale)


def test_age_group_fees_and_percentages_in_the_announcements() -> None:
    (notice,) = library(EXAMPLE).notices
    opens = announcements.render("collection_opens", notice, "zh_Hans")
    # 一（一）（二）: ages on 1 January 2027; 400, 420, 360.
    assert "2027年1月1日" in opens and "学生儿童：400元" in opens and "老年居民：360元" in opens
    groups = announcements.render("subsidy_groups", notice, "zh_Hans")
    # 二（三）: 50 % of the group's fee.
    assert "学生儿童 200元，劳动年龄内居民 210元，老年居民 180元" in groups


def test_a_notice_without_faq_entries_answers_from_its_clauses() -> None:
    index = FaqIndex(library(EXAMPLE), EXAMPLE)
    best = index.search("低保对象资助多少钱", "yangli")[0]
    assert best.kind == "clause" and (best.clause or "").startswith("二")  # 二（二）: 300元
    assert "300元" in best.message.zh()


def test_readme_schema_reference_names_every_field() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    reference = readme.split("### Schema reference")[1].split("### Worked example")[0]
    missing = [
        f"{cls.__name__}.{field}"
        for cls in vars(models).values()
        if isinstance(cls, type) and issubclass(cls, models.Strict) and cls is not models.Strict
        for field in cls.model_fields
        if f"`{field}`" not in reference and f"{field}:" not in reference
    ]
    assert not missing, missing

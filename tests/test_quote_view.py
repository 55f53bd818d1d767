"""The quote as a resident reads it: a short summary first, the details behind buttons.

Expected figures come from the case files (read off the notices) and from the notices'
own words quoted below; the limits are the issue's: at most 8 lines and 300 characters in
Chinese, 2.7 times that in English (the median English/Chinese length ratio of the full
quote before the summary, see README).
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from conversations import quote_view
from conversations.context import Context
from conversations.i18n import LOCALES, localizer
from conversations.quote_view import applicant, render_quote, visible
from conversations.resident import handle
from conversations.state import Command, Press, Reply, State, Step, Text
from policies.engine import quote
from policies.loader import NOTICES_DIR, default_library, notice_files
from policies.quote import Quote

NOW = dt.datetime(2023, 11, 5, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
GOLDEN = Path(__file__).parent / "golden"
LIMITS = {"zh_Hans": 300, "zh_Hant": 300, "en": 810}  # characters a reader sees

# One case per notice for the golden files: a subsidy, so every kind of line shows.
GOLDEN_CASES = {
    "dalate-2023": "城乡低保对象，集中参保期，先缴后补330元（旗民政局、乡村振兴统筹发展中心）",
    "fengshan-2023": "特困人员二档，集中期，资助350元自付375元",
    "shangluo-2024": "低保对象，集中缴费期，定额资助190元",
    "tonghe-2023": "低保对象，60%定额资助",
    "wulateqianqi-2024": "特困供养人员，医保局全额代缴",
}


def _cases() -> list[Any]:
    params = []
    for path in notice_files(NOTICES_DIR):
        region = path.stem.split("-")[0]
        for case in yaml.safe_load(path.with_name(path.stem + ".cases.yaml").read_text("utf-8")):
            if "error" in case:
                continue
            if case["input"].get("region", region) != region:
                continue  # a case about another region's input (unknown region)
            params.append(pytest.param(path.stem, case, id=f"{path.stem}:{case['name']}"))
    return params


CASES = _cases()


def _state(case: dict[str, Any], notice: str) -> State:
    given = case["input"]
    return State(
        step=Step.QUOTED,
        region=given.get("region", notice.split("-")[0]),
        birth_date=given["birth_date"],
        payment_date=given["date"],
        categories=list(given.get("categories") or []),
        categories_done=True,
        tier=given.get("tier"),
    )


def _ctx(locale: str, staff: bool = False) -> Context:
    return Context(default_library(), NOW, locale=locale, staff=staff)


def _summary(case: dict[str, Any], notice: str, locale: str) -> tuple[Quote, Reply]:
    state = _state(case, notice)
    q = quote(default_library(), applicant(state))
    return q, render_quote(q, state, _ctx(locale))


CLIENT = {"zh_Hans": "zh-hans", "zh_Hant": "zh-hant", "en": "en"}


def _press(state: State, data: str, locale: str, staff: bool = False) -> Reply:
    """A button pressed in a chat whose client speaks ``locale``."""
    ctx = Context(default_library(), NOW, CLIENT[locale], staff=staff)
    _, replies = handle(state, Press(data), ctx)
    assert len(replies) == 1
    return replies[0]


def _data(reply: Reply) -> list[str]:
    return [b.data for row in reply.buttons for b in row]


# -- the summary: limits, the two key facts, nothing that does not concern this person ------


@pytest.mark.parametrize(("notice", "case"), CASES)
def test_summary_is_short_and_says_what_to_pay_and_from_when(
    notice: str, case: dict[str, Any]
) -> None:
    expect = case["expect"]
    for locale in LOCALES:
        loc = localizer(locale)
        q, reply = _summary(case, notice, locale)
        variants = [reply]
        if "qd:offline" in _data(reply):  # the "no smartphone" screen is a summary too
            variants.append(render_quote(q, _state(case, notice), _ctx(locale), offline=True))
        for shown in variants:
            text = visible(shown.html)
            assert len(text.splitlines()) <= 8, (locale, text)
            assert len(text) <= LIMITS[locale], (locale, len(text), text)
            assert ".txt" not in text, text  # never a file name
            if q.notice is None:
                continue  # the "no notice covers this date" answer offers dates instead
            # Keys a case leaves out fall back to the quote (the case tests check the rest).
            if not expect.get("eligible", q.eligible):
                if locale == "zh_Hans" and q.eligible is None:  # undecided is never "no"
                    assert "能否参保缴费" in text and "不能参保" not in text, text
                    assert q.office is not None and q.office in text, text
                elif locale == "zh_Hans":
                    assert "不能参保" in text, text
                continue
            pay = expect.get("pay_now", q.pay_now)
            if pay == 0:
                assert loc.gettext("无需缴费") in text, text
            elif pay is None:  # the notice's silence, said as such
                assert loc.gettext("通知未载明") in text, text
            else:
                assert loc.money(pay) in text, text
            start = expect.get("benefit_start", q.benefit_start)
            if start is None:
                assert loc.gettext("起始日通知未写明") in text, text
            else:
                assert loc.date(start) in text, text


@pytest.mark.parametrize(("notice", "case"), CASES)
def test_summary_holds_no_note_whose_condition_the_applicant_misses(
    notice: str, case: dict[str, Any]
) -> None:
    for locale in LOCALES:
        loc = localizer(locale)
        q, reply = _summary(case, notice, locale)
        text = visible(reply.html)
        for note in q.other_notes:
            assert loc.msg(note.msg) not in text, (locale, note.text)
        if not q.registration:
            assert "qd:reg" not in _data(reply)


def test_the_notes_condition_sends_a_newborns_note_to_newborns_only() -> None:
    # 通河县 三: 低保对象 60% of the 380 standard; only newborns also pay 2022's 350.
    newborn = {"birth_date": dt.date(2022, 10, 1), "date": dt.date(2022, 11, 5)}
    adult = {"birth_date": dt.date(1980, 5, 1), "date": dt.date(2022, 11, 5)}
    said = "通知未写明新生儿同时缴纳的2022年度350元部分是否也给予资助"
    for given, shown in ((newborn, True), (adult, False)):
        case = {"input": {**given, "categories": ["dibao"]}}
        q = quote(default_library(), applicant(_state(case, "tonghe-2023")))
        assert any(said in n.text for n in q.notes) is shown
        assert any(said in n.text for n in q.other_notes) is not shown


def test_nothing_due_means_no_channels_no_registration_no_refund() -> None:
    # 乌拉特前旗 二（二）1: 特困供养人员 "由医保局全额代缴，个人无需缴费".
    case = {
        "input": {
            "birth_date": dt.date(1950, 3, 1),
            "date": dt.date(2023, 11, 5),
            "categories": ["tekun"],
        }
    }
    q, reply = _summary(case, "wulateqianqi-2024", "zh_Hans")
    text = visible(reply.html)
    assert "无需缴费：由医保局代缴 400元〔二（二）1〕" in text
    assert "到哪交" not in text and "qd:pay" not in _data(reply) and "qd:reg" not in _data(reply)
    assert not any("不予退费" in n.text for n in q.notes)


def test_registration_only_for_those_it_concerns_and_as_lists() -> None:
    ordinary = {"input": {"birth_date": dt.date(1980, 5, 1), "date": dt.date(2023, 11, 5)}}
    _, reply = _summary(ordinary, "shangluo-2024", "zh_Hans")
    assert "qd:reg" not in _data(reply)  # 商洛市 五（二）: only 税务部门无信息的新增人员
    new = {
        "input": {
            "birth_date": dt.date(1980, 5, 1),
            "date": dt.date(2022, 11, 5),
            "categories": ["new_enrollee"],
        }
    }
    state = _state(new, "tonghe-2023")
    reply = _press(state, "qd:reg", "zh_Hans")
    # 通河县 五: 城镇居民参保登记点在县医保局、…，农村居民参保登记点在各镇卫生院.
    lines = visible(reply.html).splitlines()
    assert "· 城镇居民：县医保局、前进社区卫生院、长安社区卫生院" in lines
    assert "· 农村居民：各镇卫生院" in lines and "· 身份证或户口簿" in lines
    assert "先到城镇居民" not in reply.html


def test_the_fee_after_june_matches_the_tier_menu() -> None:
    # 凤山街道 二（二）2: 二档 725元; 三（一）: after 30 June "个人缴费+财政补助标准".
    chat_state = State(
        step=Step.TIER, region="fengshan", birth_date=dt.date(1980, 1, 1), categories_done=True
    )
    ctx = Context(default_library(), NOW, "zh-hans")
    _, replies = handle(chat_state, Command("help"), ctx)
    menu = replies[-1]
    assert any("二档 725元" in b.label for row in menu.buttons for b in row)
    case = {"input": {"birth_date": dt.date(1980, 1, 1), "date": dt.date(2023, 8, 1), "tier": 2}}
    _, reply = _summary(case, "fengshan-2023", "zh_Hans")
    text = visible(reply.html)
    assert "现在需缴：个人缴费 725元＋财政补助标准（后者通知未载明）" in text
    assert "现在需缴：通知未载明" not in text


# -- golden files ---------------------------------------------------------------------------


def _golden_case(notice: str) -> dict[str, Any]:
    path = NOTICES_DIR / f"{notice}.cases.yaml"
    cases = yaml.safe_load(path.read_text("utf-8"))
    return next(c for c in cases if c["name"] == GOLDEN_CASES[notice])


@pytest.mark.parametrize("notice", sorted(GOLDEN_CASES))
@pytest.mark.parametrize("locale", LOCALES)
def test_summary_matches_its_golden_file(notice: str, locale: str) -> None:
    _, reply = _summary(_golden_case(notice), notice, locale)
    shown = (
        visible(reply.html)
        + "\n"
        + "\n".join(" | ".join(b.label for b in row) for row in reply.buttons)
        + "\n"
    )
    path = GOLDEN / f"{notice}.{locale}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(shown, "utf-8")
    assert shown == path.read_text("utf-8")


# -- details ----------------------------------------------------------------------------------


def _all_details(state: State, locale: str, staff: bool = False) -> str:
    """Every detail the summary's buttons lead to, each button pressed once."""
    q = quote(default_library(), applicant(state))
    summary = render_quote(q, state, _ctx(locale, staff))
    pressed, shown, todo = set(), [], [d for d in _data(summary) if d.startswith("qd:")]
    while todo:
        data = todo.pop()
        if data in pressed or data == "qd:pic":
            continue
        pressed.add(data)
        reply = _press(state, data, locale, staff)
        shown.append(reply.html)
        todo += [d for d in _data(reply) if d.startswith("qd:")]
    return html.unescape("\n".join(shown))


@pytest.mark.parametrize(("notice", "case"), CASES)
def test_every_hidden_detail_is_one_button_away(notice: str, case: dict[str, Any]) -> None:
    state = _state(case, notice)
    q = quote(default_library(), applicant(state))
    if q.notice is None:
        return
    for locale in LOCALES:
        loc = localizer(locale)
        details = _all_details(state, locale)
        assert ".txt" not in details
        for note in (*q.notes, *q.other_notes, *q.registration):
            if note in q.registration:
                continue  # shown as lists: checked by its parts below
            assert loc.msg(note.msg) in details, (locale, note.text)
        for reg in q.registration:
            assert loc.term(str(reg.msg.params["who"])) in details
        if q.eligible and q.pay_now != 0:
            for ch in q.channels:
                assert loc.term(ch.name) in details
                assert ch.how is None or loc.term(ch.how) in details
        for c in q.citations:  # the notice's words: a passage inside a longer one counts
            assert c.quote in details, (locale, c.quote)


def test_staff_also_see_the_file_and_the_whole_clause() -> None:
    state = _state(_golden_case("shangluo-2024"), "shangluo-2024")
    resident = _press(state, "qd:why", "zh_Hans")
    staff = _press(state, "qd:why", "zh_Hans", staff=True)
    assert (
        "商医保发〔2023〕67号" in resident.html and "004_2e7c0db1526c3ad3.txt" not in resident.html
    )
    assert "004_2e7c0db1526c3ad3.txt" in staff.html
    # 二（二）'s whole text, beyond the quoted words.
    assert "条款全文（工作人员可见）" in staff.html and "条款全文" not in resident.html


def test_no_smartphone_swaps_in_the_offline_channel() -> None:
    # 通河县 五: "持身份证（或户口簿）到哈尔滨银行通河支行柜台缴费".
    case = {"input": {"birth_date": dt.date(1980, 5, 1), "date": dt.date(2022, 11, 5)}}
    state = _state(case, "tonghe-2023")
    _, summary = _summary(case, "tonghe-2023", "zh_Hans")
    assert "“哈尔滨银行”微信公众号" in summary.html and "qd:offline" in _data(summary)
    offline = _press(state, "qd:offline", "zh_Hans")
    assert offline.edit and "哈尔滨银行通河支行柜台" in offline.html
    assert "微信公众号" not in visible(offline.html).split("\n")[2]
    assert "qd:online" in _data(offline)


def test_a_stale_button_after_the_quote_gets_one_line() -> None:
    state = _state(_golden_case("shangluo-2024"), "shangluo-2024")
    reply = _press(state, "cat:dibao", "zh_Hans")
    assert len(visible(reply.html)) < 60 and "现在需缴" not in reply.html
    assert {"edit", "restart"} <= set(_data(reply))
    # A detail button once the quote is gone: the current question instead.
    asking = State(step=Step.BIRTH, region="shangluo")
    _, replies = handle(asking, Press("qd:why"), Context(default_library(), NOW, "zh-hans"))
    assert "出生日期" in replies[0].html and "依据" not in replies[0].html


def test_every_button_fits_telegrams_64_bytes() -> None:
    for notice, case in ((p.values[0], p.values[1]) for p in CASES):
        state = _state(case, notice)
        for locale in LOCALES:
            q = quote(default_library(), applicant(state))
            for data in _data(render_quote(q, state, _ctx(locale))):
                assert len(data.encode()) <= 64, data


def test_the_conversation_reaches_the_summary_and_a_detail() -> None:
    ctx = Context(default_library(), NOW, "zh-hans")
    state = State()
    for event in (
        Command("start"),
        Press("region:dalate"),
        Text("1980-05-01"),
        Press("cat:dibao"),
        Press("cat:done"),
        Text("2022-10-10"),
    ):
        state, replies = handle(state, event, ctx)
    assert state.step == Step.QUOTED
    assert re.search(r"现在需缴：380元〔二（一）〕", visible(replies[0].html))
    state, replies = handle(state, Press("qd:why"), ctx)
    # 达拉特旗 三（二）: 低保 "先缴后补" 330元.
    assert "（先缴后补）" in replies[0].html and state.step == Step.QUOTED
    assert quote_view.PREFIX == "qd:"


@pytest.mark.parametrize("notice", sorted(GOLDEN_CASES))
def test_details_read_in_english_and_traditional(notice: str) -> None:
    from test_i18n import CJK, S2T, _outside_quotes_and_brackets

    state = _state(_golden_case(notice), notice)
    english = _outside_quotes_and_brackets(_all_details(state, "en"))
    assert not CJK.search(english), english
    simplified = set(_all_details(state, "zh_Hans").splitlines())
    for line in _all_details(state, "zh_Hant").splitlines():
        # A line left exactly as the Simplified one although it has characters to convert.
        outside = _outside_quotes_and_brackets(line)
        assert not (line in simplified and S2T.convert(outside) != outside), line

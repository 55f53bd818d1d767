"""Residents typing the way people type: the labelled set and the conversation around it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from understanding_evaluation import evaluate

from conversations import understanding
from conversations.context import Context
from conversations.resident import handle
from conversations.state import Command, Event, Press, Reply, State, Step, Text
from conversations.understanding import understand
from policies.loader import default_library

CHINA = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2023, 10, 18, 10, 0, tzinfo=CHINA)  # inside 商洛市's 2023-09…12-20 window


def test_labelled_messages_are_understood() -> None:
    score = evaluate()
    assert score.total >= 300
    assert score.rate >= 0.95, "\n".join(score.misses)
    for lang, (right, total) in score.per_lang.items():
        assert right / total >= 0.9, lang


def chat(
    *events: Event, now: dt.datetime = NOW, language: str = "zh-hans"
) -> tuple[State, list[Reply]]:
    ctx = Context(default_library(), now, language)
    state, replies = State(), list[Reply]()
    for event in events:
        state, replies = handle(state, event, ctx)
    return state, replies


def test_one_message_answers_every_question() -> None:
    # 商洛市 一（三）: 380 元; 二（二）: 低保对象 资助 190 元; 四（一）: benefits from 2024-01-01.
    state, replies = chat(Text("我是商洛的低保户，1956年3月5日出生，明天去交，要交多少钱"))
    assert state.step == Step.QUOTED and state.categories == ["dibao"]
    html = replies[-1].html
    assert "商洛市 · 1956年3月5日出生 · 低保对象" in html
    assert "现在需缴：<b>190元</b>" in html and "待遇：<b>2024年1月1日起</b>" in html


def test_a_birth_year_is_enough_where_the_day_does_not_change_the_answer() -> None:
    state, replies = chat(Text("商洛 低保户 1956年出生"), Text("明天"))
    assert state.step == Step.QUOTED and "现在需缴：<b>190元</b>" in replies[-1].html


def test_a_newborn_month_asks_the_day_because_90_days_depend_on_it() -> None:
    # 达拉特旗 三（三）: a baby registered within 90 days of birth is covered from birth;
    # 二（三）: later enrolment waits 3 months. Paying 2023-04-15, a baby born 2023-01-01
    # is 104 days old, one born 2023-01-31 is 74: the day decides, so it is asked.
    now = dt.datetime(2023, 4, 15, 10, 0, tzinfo=CHINA)
    message = Text("达拉特旗 孩子2023年1月出生 普通居民 今天交")
    state, replies = chat(message, now=now)
    assert state.step == Step.BIRTH and "具体哪一天出生会影响结果" in replies[-1].html
    state, replies = chat(message, Text("1月20号"), now=now)
    assert state.birth_date == dt.date(2023, 1, 20) and state.step == Step.QUOTED
    assert "待遇：<b>2023年1月20日起</b>，至 2023年12月31日" in replies[-1].html


def test_a_question_mid_way_is_answered_then_the_question_asked_again() -> None:
    state, replies = chat(Command("start"), Press("region:shangluo"), Text("在哪交？"))
    assert state.step == Step.BIRTH and state.region == "shangluo"
    assert "〔五（一）1〕" in replies[0].html  # 商洛市 五（一）1: 税务部门公开的缴费渠道
    assert "出生日期" in replies[-1].html


def test_faq_command_mid_way_comes_back_to_the_pending_question() -> None:
    state, replies = chat(
        Command("start"), Press("region:shangluo"), Command("faq"), Text("新生儿怎么参保")
    )
    assert state.step == Step.BIRTH and "出生日期" in replies[-1].html


def test_corrections_change_one_answer_and_keep_the_others() -> None:
    state, _ = chat(Text("商洛 低保户 1956年3月5日出生"), Text("不对，是1957年"))
    assert state.birth_date == dt.date(1957, 1, 1) and state.categories == ["dibao"]
    state, _ = chat(Text("商洛 1956年3月5日出生"), Text("我搞错了，是达拉特旗的"))
    assert state.region == "dalate" and state.birth_date == dt.date(1956, 3, 5)


def test_an_id_number_gives_the_birth_date_and_is_neither_kept_nor_echoed() -> None:
    number = "610102195603051232"  # check digit 2 per GB 11643 (weights 7,9,10,5,8,4,2,1,6,3…)
    state, replies = chat(Command("start"), Press("region:shangluo"), Text(number))
    assert state.birth_date == dt.date(1956, 3, 5)
    assert number not in state.model_dump_json() and number not in replies[-1].html
    assert "没有保存" in replies[-1].html
    state, replies = chat(Command("start"), Press("region:shangluo"), Text(number[:-1] + "7"))
    assert state.birth_date is None and "校验位不对" in replies[-1].html
    # With a question in the same message: answered, the number not echoed in "问：…".
    state, replies = chat(Command("start"), Press("region:shangluo"), Text(f"{number} 在哪交"))
    assert state.birth_date == dt.date(1956, 3, 5)
    assert all(number not in r.html for r in replies) and "〔五（一）1〕" in replies[0].html


def test_payment_before_the_notice_could_apply_is_explained() -> None:
    # 商洛市 四: collection from 2023年9月; a payment in 2021 is before any loaded notice.
    state, replies = chat(Text("商洛 低保户 1956年3月5日出生"), Text("2021年10月1日交"))
    assert state.payment_date is None and "早于这个地区的通知开始收缴的日期" in replies[-1].html


def test_traditional_and_english_reach_the_same_quote() -> None:
    simplified = chat(Text("凤山街道 一档 1970年6月1日出生 低保户 明天交"))[0]
    traditional = chat(Text("鳳山街道 一檔 1970年6月1日出生 低保戶 明天交"))[0]
    english = chat(
        Text("Fengshan, tier 1, born 1 June 1970, on minimum living allowance, paying tomorrow")
    )[0]
    for state in (simplified, traditional, english):
        assert state.step == Step.QUOTED
        assert (state.region, state.tier, state.categories) == ("fengshan", 1, ["dibao"])
        assert state.birth_date == dt.date(1970, 6, 1) and state.payment_date == dt.date(
            2023, 10, 19
        )


def test_typed_navigation_in_three_languages() -> None:
    for back in ("返回", "上一步", "back", "返回上一個問題"):
        state, _ = chat(Command("start"), Press("region:shangluo"), Text(back))
        assert state.step == Step.REGION, back
    for done in ("完成", "Done"):
        state, _ = chat(Text("商洛 1956年3月5日出生"), Press("cat:dibao"), Text(done))
        assert state.step == Step.PAYMENT and state.categories == ["dibao"], done


def test_typo_place_and_parent_city_find_the_region_ambiguity_asks() -> None:
    for typed, region in (
        ("商落", "shangluo"),
        ("通和县", "tonghe"),
        ("洛南县", "shangluo"),
        ("鄂尔多斯", "dalate"),
        ("達拉特旗", "dalate"),
    ):
        state, _ = chat(Command("start"), Text(typed))
        assert state.region == region, typed
    state, replies = chat(Command("start"), Text("内蒙古"))
    assert state.region is None
    assert {b.data for row in replies[-1].buttons for b in row} == {
        "region:dalate",
        "region:wulateqianqi",
    }
    state, replies = chat(Command("start"), Text("北京"))
    assert "没有找到“北京”" in replies[-1].html and "商洛市" in replies[-1].html


def test_relative_payment_span_is_its_latest_day_said_so() -> None:
    state, replies = chat(Text("商洛 低保户 1956年3月5日出生"), Text("下个月"))
    assert state.payment_date == dt.date(2023, 11, 30)
    assert "按其中最后一天" in replies[-1].html


def test_how_much_first_starts_the_quote_and_a_question_waits_for_the_region() -> None:
    state, replies = chat(Text("多少钱"))
    assert state.step == Step.REGION and state.faq_question is None
    state, replies = chat(Command("start"), Text("多少钱"))
    assert state.step == Step.REGION and "算出您要交多少钱" in replies[-1].html
    # 商洛市 五（一）1 answers where to pay once the (typed) region is known.
    state, replies = chat(Command("start"), Text("在哪交？"), Text("商洛"))
    assert "〔五（一）1〕" in replies[0].html and state.step == Step.BIRTH
    assert "出生日期" in replies[-1].html and state.faq_question is None


def test_a_two_character_region_typo_in_a_sentence_is_asked_not_taken() -> None:
    # "商落" inside a sentence may be 商洛 (or "商量"…): asked, never answered for a region.
    state, replies = chat(Text("商落低保户交多少"))
    assert state.region is None and state.step == Step.REGION
    assert "您是说商洛市吗" in replies[-1].html
    assert replies[-1].buttons[0][0].data == "region:shangluo"
    state, _ = chat(Text("商落低保户交多少"), Press("region:shangluo"))
    assert state.region == "shangluo" and state.categories == ["dibao"]
    # The FAQ asks the same way, then answers (商洛市 二（二）: 低保对象 190 元).
    state, replies = chat(Command("cancel"), Text("商落低保户能补多少"))
    assert [[b.data for b in row] for row in replies[-1].buttons] == [["faqregion:shangluo"]]
    state, replies = chat(
        Command("cancel"), Text("商落低保户能补多少"), Press("faqregion:shangluo")
    )
    assert "190" in replies[-1].html and "〔二（二）〕" in replies[-1].html


def test_a_message_of_dates_alone_skips_the_word_searches_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step cost (issue 14): a message that is nothing but dates (or an ID number) is
    understood without the region, group and word searches, which could find nothing in it;
    the answer is the one the full reading gives."""
    texts = [
        "1956-03-05",
        "19560305",
        "1956.3.5",
        " 1956/3/5 ",
        "1956年3月5日",
        "56年3月5号",
        "一九五六年三月五日",
        "5 March 1956",
        "March 5, 1956",
        "明天",
        "tomorrow",
        "今天",
        "2023-02-30",
        "3/5/1956",
        "11010519491231002X",
        "110105194912310021",
        "2023年12月",
        "1956年",
        "明天交",
        "1956-03-05 低保",
        "商洛 1956-03-05",  # the last three have words
    ]
    library, today = default_library(), NOW.date()
    cases = [
        (text, step, region)
        for text in texts
        for step in (Step.BIRTH, Step.PAYMENT, Step.CATEGORIES)
        for region in (None, "shangluo", "fengshan")
    ]
    fast = [understand(t, step=s, region=r, library=library, today=today) for t, s, r in cases]
    monkeypatch.setattr(understanding, "_has_words", lambda _words: True)
    full = [understand(t, step=s, region=r, library=library, today=today) for t, s, r in cases]
    assert fast == full
    assert sum(f.birth is not None or f.payment is not None for f in fast) > len(cases) // 2

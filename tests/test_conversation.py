"""The resident conversation as event sequences, without Telegram.

Figures asserted here are read off the notices (clauses named beside them).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from conversations.context import Context
from conversations.quote_view import visible
from conversations.resident import handle
from conversations.state import Command, Event, Press, Reply, State, Step, Text
from policies.loader import default_library

CHINA = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=CHINA)


class Chat:
    """Feeds events one by one, as a driver would, keeping the stored state."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.state = State()
        self.now = now
        self.replies: list[Reply] = []

    def send(self, *events: Event) -> Reply:
        for event in events:
            self.state, self.replies = handle(
                self.state, event, Context(default_library(), self.now)
            )
        return self.replies[-1]

    def text(self, text: str) -> Reply:
        return self.send(Text(text))

    def press(self, data: str) -> Reply:
        return self.send(Press(data))

    def step(self) -> Step:  # a call, so mypy does not narrow it across events
        return self.state.step


def buttons(reply: Reply) -> list[str]:
    return [b.data for row in reply.buttons for b in row]


def at_categories(region: str = "shangluo", born: str = "1980-05-01") -> Chat:
    chat = Chat()
    chat.send(Command("start"), Press(f"region:{region}"), Text(born))
    assert chat.step() == Step.CATEGORIES
    return chat


def test_start_offers_every_region_as_a_button() -> None:
    reply = Chat().send(Command("start"))
    assert "居民医保缴费助手" in reply.html
    assert {d for d in buttons(reply)} == {
        "region:dalate",
        "region:tonghe",
        "region:wulateqianqi",
        "region:fengshan",
        "region:shangluo",
    }


@pytest.mark.parametrize(
    ("typed", "region"),
    [
        ("商洛", "shangluo"),
        ("我在达旗", "dalate"),
        ("乌前旗", "wulateqianqi"),
        ("武隆", "fengshan"),
        ("通河县", "tonghe"),
        ("Shangluo", "shangluo"),
    ],
)
def test_region_can_be_typed(typed: str, region: str) -> None:
    chat = Chat()
    chat.send(Command("start"), Text(typed))
    assert (chat.state.region, chat.step()) == (region, Step.BIRTH)


def test_unknown_region_is_explained_and_asked_again() -> None:
    chat = Chat()
    reply = chat.send(Command("start"), Text("北京"))
    assert chat.step() == Step.REGION and "没有找到“北京”" in reply.html
    assert "region:shangluo" in buttons(reply)


@pytest.mark.parametrize(
    "typed",
    ["2023-03-10", "2023/3/10", "2023.3.10", "20230310", "2023年3月10日", "２０２３－０３－１０"],
)
def test_birth_date_formats(typed: str) -> None:
    chat = Chat()
    chat.send(Command("start"), Press("region:shangluo"), Text(typed))
    assert chat.state.birth_date == dt.date(2023, 3, 10)


def test_today_is_accepted_and_means_china_today() -> None:
    chat = Chat(now=dt.datetime(2026, 11, 22, 23, 30, tzinfo=CHINA))
    chat.send(Command("start"), Press("region:shangluo"), Text("今天"))
    assert chat.state.birth_date == dt.date(2026, 11, 22)


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("2023-02-30", "这一天不存在"),
        ("去年春天", "没看懂"),
        ("2030-01-01", "在今天之后"),
        ("1800-01-01", "太早了"),
        ("<b>x</b>", "&lt;b&gt;x&lt;/b&gt;"),
    ],
)
def test_bad_birth_dates_keep_the_region_and_ask_again(typed: str, says: str) -> None:
    chat = Chat()
    reply = chat.send(Command("start"), Press("region:dalate"), Text(typed))
    assert chat.step() == Step.BIRTH and chat.state.region == "dalate"
    assert says in reply.html and "出生日期" in reply.html
    assert "<b>x</b>" not in reply.html


def test_categories_toggle_in_place_and_are_typed() -> None:
    chat = at_categories()
    reply = chat.press("cat:dibao")
    assert reply.edit and chat.state.categories == ["dibao"]
    assert any(b.label.startswith("✅") for row in reply.buttons for b in row)
    chat.press("cat:dibao")
    assert chat.state.categories == []
    # Typed groups are the answer: both kept, the next question asked (back changes them).
    reply = chat.text("我是低保户，也是特困人员")
    assert chat.state.categories == ["tekun", "dibao"] and chat.step() == Step.PAYMENT
    assert "特困人员" in reply.html and "低保对象" in reply.html
    chat.text("上一步")
    assert chat.step() == Step.CATEGORIES
    chat.text("完成")
    assert chat.state.categories_done and chat.step() == Step.PAYMENT


def test_a_longer_category_name_is_not_read_as_a_shorter_one() -> None:
    chat = at_categories("fengshan")
    chat.text("我家是低保边缘户")
    assert chat.state.categories == ["dibao_bianyuan"]


def test_none_of_these() -> None:
    chat = at_categories()
    chat.text("都不是")
    assert chat.state.categories == [] and chat.step() == Step.PAYMENT


def test_unrecognised_category_text_asks_again() -> None:
    chat = at_categories()
    reply = chat.text("我是老师")
    assert chat.step() == Step.CATEGORIES and "没有从“我是老师”中认出" in reply.html


def test_tier_is_asked_only_where_the_notice_has_tiers() -> None:
    chat = at_categories("fengshan")
    reply = chat.press("cat:none")
    assert chat.step() == Step.TIER
    # 二（二）: 一档 350 元, 二档 725 元; 四（二）: outpatient limits 300 / 500 元.
    assert "一档：350元/年" in reply.html and "500元" in reply.html
    chat.text("三档")
    assert chat.step() == Step.TIER
    chat.text("二档")
    assert chat.state.tier == 2 and chat.step() == Step.PAYMENT
    plain = at_categories("dalate")
    plain.press("cat:none")
    assert plain.step() == Step.PAYMENT


def test_quote_shangluo_low_income_in_concentrated_period() -> None:
    chat = at_categories()
    chat.press("cat:dibao")
    chat.press("cat:done")
    reply = chat.text("2023年11月5日")
    assert chat.step() == Step.QUOTED
    # 一（三） 380 元; 二（二） 低保对象 190 元定额资助; 四（一） 2024-01-01 至 2024-12-31.
    text = visible(reply.html)
    assert "现在需缴：190元" in text and "已减去资助 190元，由医疗救助基金承担〔二（二）〕" in text
    assert "2024年1月1日起，至 2024年12月31日〔四（一）〕" in text
    assert "004_2e7c0db1526c3ad3.txt" not in text  # residents get no file names
    assert set(buttons(reply)) >= {"edit", "restart", "faq"}
    reply = chat.press("faq")  # the quote offers a question, too
    assert chat.step() == Step.FAQ and "请直接输入您的问题" in reply.html


def test_quote_dalate_pay_first_then_reimbursed() -> None:
    chat = at_categories("dalate")
    chat.press("cat:dibao")
    chat.press("cat:done")
    reply = chat.text("2022-10-10")
    # 二（一） 380 元; 三（二） 先缴后补, 330 元 reimbursed.
    text = visible(reply.html)
    assert "现在需缴：380元" in text and "先缴后补：之后补助 330元" in text
    assert "实际负担 50元" in text


def test_undecided_says_the_notice_does_not_say_and_names_the_office() -> None:
    chat = at_categories("tonghe", "1980-05-01")
    chat.press("cat:none")
    reply = chat.text("2023-01-15")
    # 通河县 四: the concentrated period ends 2022-12-31; only newborns are provided for after.
    assert "通知没有写明这种情况能否参保缴费，请向县医疗保障局咨询" in reply.html
    assert "不能参保" not in reply.html


def test_no_waiting_period_means_cover_from_the_payment_date() -> None:
    chat = at_categories("dalate", "1960-03-01")
    chat.press("cat:tekun")
    chat.press("cat:done")
    reply = chat.text("2023-05-16")
    # 二（三）: 动态调整的特困人员…不设置待遇等待期; 三（一）: 旗财政全额承担.
    assert "待遇：<b>2023年5月16日起</b>，至 2023年12月31日〔二（三）〕" in reply.html
    assert "无需缴费" in reply.html


def test_today_after_every_notice_offers_dates_inside_them() -> None:
    chat = at_categories()
    chat.press("cat:none")
    reply = chat.press("pay:today")
    assert chat.state.payment_date == NOW.date()
    assert "没有覆盖" in reply.html and "2024年度" in reply.html
    assert "380元" not in reply.html  # never an old year's fee as if it applied today
    assert "pay:2023-09-01" in buttons(reply)
    reply = chat.press("pay:2023-09-01")
    assert "现在需缴：380元" in visible(reply.html) and "2024年1月1日" in reply.html


def test_payment_before_birth_is_refused_and_asked_again() -> None:
    chat = at_categories(born="2023-06-01")
    chat.press("cat:none")
    reply = chat.text("2023-05-01")
    assert chat.step() == Step.PAYMENT and "早于出生日期" in reply.html
    assert chat.state.birth_date == dt.date(2023, 6, 1)


def test_back_keeps_answers_and_returns_to_the_first_missing_question() -> None:
    chat = at_categories()
    chat.press("cat:tekun")
    chat.press("cat:done")
    assert chat.step() == Step.PAYMENT
    chat.press("back")
    assert chat.step() == Step.CATEGORIES and chat.state.categories == ["tekun"]
    chat.press("back")
    assert chat.step() == Step.BIRTH
    chat.text("1981-01-01")
    assert chat.step() == Step.PAYMENT  # categories are kept, not asked again


def test_change_one_answer_from_the_quote() -> None:
    chat = at_categories()
    chat.press("cat:none")
    chat.text("2023-11-05")
    reply = chat.press("edit")
    assert "edit:birth" in buttons(reply) and "edit:tier" not in buttons(reply)
    chat.press("edit:payment")
    reply = chat.text("2024-03-15")
    # 四（一）: paid in the 补缴期 (2024-01-01 … 06-30): benefits from the next month.
    text = visible(reply.html)
    assert chat.step() == Step.QUOTED and "2024年4月1日起，至 2024年12月31日" in text


def test_changing_region_drops_categories_of_the_old_region() -> None:
    chat = at_categories("fengshan")
    chat.press("cat:dibao_bianyuan")
    chat.press("cat:done")
    chat.press("tier:1")
    chat.text("2022-12-10")
    chat.send(Press("edit"), Press("edit:region"), Press("region:shangluo"))
    assert chat.state.categories == [] and chat.state.tier is None
    assert chat.step() == Step.CATEGORIES


def test_cancel_forgets_personal_data() -> None:
    chat = at_categories()
    reply = chat.send(Command("cancel"))
    assert chat.step() == Step.IDLE and chat.state.birth_date is None
    assert "已删除" in reply.html


def test_help_keeps_the_current_question() -> None:
    chat = at_categories()
    chat.send(Command("help"))
    assert chat.step() == Step.CATEGORIES
    assert "商医保发〔2023〕67号" in chat.replies[0].html
    assert "您属于下列哪些人群" in chat.replies[1].html


def test_unknown_command_and_non_text_keep_the_question() -> None:
    chat = at_categories()
    reply = chat.send(Command("weather"))
    assert chat.step() == Step.CATEGORIES and "不认识这个命令" in reply.html
    reply = chat.send(Command("nontext"))
    assert chat.step() == Step.CATEGORIES and "只能看懂文字和按钮" in reply.html


def test_old_buttons_are_expired_not_misread() -> None:
    chat = at_categories()
    reply = chat.press("region:dalate")
    assert chat.state.region == "shangluo" and "按钮已经过期" in reply.html
    assert chat.step() == Step.CATEGORIES


def test_back_after_30_minutes_is_welcomed_with_the_answers_kept() -> None:
    # Answers are kept for the retention period (the storage purge deletes them later).
    chat = at_categories()
    chat.now = NOW + dt.timedelta(hours=5)
    reply = chat.press("cat:none")
    assert "欢迎回来" in reply.html and chat.step() == Step.PAYMENT
    assert chat.state.birth_date == dt.date(1980, 5, 1) and chat.state.region == "shangluo"
    assert ["restart"] in [[b.data for b in row] for row in reply.buttons]
    chat.press("restart")
    assert chat.step() == Step.REGION and chat.state.birth_date is None


def test_idle_for_less_than_30_minutes_resumes() -> None:
    chat = at_categories()
    chat.now = NOW + dt.timedelta(minutes=29)
    chat.press("cat:none")
    assert chat.step() == Step.PAYMENT and chat.state.birth_date == dt.date(1980, 5, 1)


def test_every_notice_quotes_through_the_conversation() -> None:
    for notice in default_library().notices:
        chat = at_categories(notice.region.id)
        chat.press("cat:none")
        if chat.step() == Step.TIER:
            chat.press("tier:1")
        window = notice.windows[-1]
        reply = chat.text(window.end.isoformat())
        assert chat.step() == Step.QUOTED and notice.region.name in reply.html
        assert len(reply.html) < 4096 * 2

"""Hostile and odd input (issue 13): forged button data, long or strange text echoed back,
long FAQ questions, and replies Telegram would refuse."""

from __future__ import annotations

import pytest
from botapi_stub import MAX_TEXT, html_error
from test_conversation import Chat, at_categories

from bot.splitting import split_html
from conversations.context import Context
from conversations.resident import handle
from conversations.state import Command, Press, Step, Text
from policies import faq
from policies.loader import default_library

STALE = "这个按钮已经过期了"  # messages.html.j2 stale_button

FORGED = [
    "edit:xyz",
    "edit:",
    "rem:",
    "rem:on",
    "rem:on:",
    "bc:stop:²",
    "bc:stop:" + "9" * 25,
    "bc:stop:",
    "cat:" + "x" * 80,
    "lang:xx",
    "tier:１",
    "region:shangluo\n",
    "",
]


@pytest.mark.parametrize("data", FORGED)
@pytest.mark.parametrize("staff", [False, True])
@pytest.mark.parametrize("step", ["categories", "quoted"])
def test_forged_callback_data_gets_the_stale_button_answer(
    data: str, staff: bool, step: str
) -> None:
    """Issue 13, "forged or malformed callback data crashes handlers": every press goes
    through one parser; what it rejects is answered as an old button, nothing changes."""
    chat = at_categories()
    if step == "quoted":
        chat.send(Press("cat:dibao"), Press("cat:done"), Text("2023-11-01"))
    before = chat.state.model_copy(deep=True)
    state, replies = handle(
        chat.state, Press(data), Context(default_library(), chat.now, staff=staff)
    )
    assert replies and all(r.html for r in replies)
    assert STALE in replies[0].html, replies[0].html
    assert state.model_dump(exclude={"updated_at"}) == before.model_dump(exclude={"updated_at"})


LONG = "乌" * 5000
ODD = "\u202e\u200b<b>&amp;\x00" + "🙂" * 3000


@pytest.mark.parametrize("typed", [LONG, ODD])
def test_echoed_text_is_a_short_escaped_excerpt(typed: str) -> None:
    """Issue 13, "a user's text echoed back can make a reply over 4,096 characters": the
    bad-region, bad-date, bad-category and FAQ replies quote a short excerpt, escaped."""
    replies = []
    chat = Chat()
    chat.send(Command("start"))
    replies.append(chat.text(typed))  # bad region
    chat.press("region:shangluo")
    replies.append(chat.text(typed))  # bad birth date
    chat = at_categories()
    replies.append(chat.text(typed))  # bad category
    chat.send(Command("faq"))
    replies.append(chat.text(typed))  # the question line
    for reply in replies:
        assert html_error(reply.html) is None, reply.html[:200]
        assert len(reply.html) < 2000
        assert "\x00" not in reply.html and "\u202e" not in reply.html
        assert "<b>&amp;" not in reply.html.replace("<b>&amp;amp;", "")


def test_a_long_question_is_analysed_only_in_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13, "a 4,096-character FAQ question costs 0.37 s of CPU on the event loop":
    only the first part of a message is read (figures: README, bench_faq_long.py)."""
    asked: list[int] = []
    search = faq.FaqIndex.search

    def recording(self: faq.FaqIndex, question: str, *args: object, **kwargs: object) -> object:
        asked.append(len(question))
        return search(self, question, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(faq.FaqIndex, "search", recording)
    chat = Chat()
    chat.send(Command("faq"))
    reply = chat.text("商洛低保户交多少" + "啊" * 4090)
    assert chat.step() == Step.FAQ and "190" in reply.html  # 商洛市 二（二）
    assert asked and max(asked) <= 200
    chat.state.faq_region = None
    chat.text("低保户交多少" + "啊" * 4090)
    assert chat.state.faq_question is not None and len(chat.state.faq_question) <= 200


def test_split_never_cuts_inside_a_tag_or_entity_and_cuts_long_lines() -> None:
    """Issue 13, "splitting can leave <b> open across parts": every part is valid HTML
    for Telegram, within the limit, and the parts add up to the text."""
    html = "<b>" + "低保 &amp; 特困 " * 900 + "</b>\n<i>" + "x" * 5000 + "</i>\n短行"
    parts = split_html(html)
    assert len(parts) >= 3
    for part in parts:
        assert html_error(part) is None, part[:80]
        assert len(part.encode("utf-16-le")) // 2 <= MAX_TEXT
    shown = "".join(parts).replace("</b><b>", "").replace("</i><i>", "")
    assert shown.replace("\n", "") == html.replace("\n", "")

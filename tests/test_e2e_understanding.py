"""Residents typing the way people type, over the Bot API stand-in (the real bot process).

One resident per notice types everything in one message, in Simplified Chinese, in
Traditional Chinese and in English, and gets the same quote within two turns; the figures
are the notice's, as its cases file states them. The bot runs on the real clock, so the
payment dates are typed as dates inside each notice's windows.
"""

from __future__ import annotations

import pytest
from botapi_stub import JSONDict
from test_e2e_bot import (
    ASK_BIRTH,
    SCENARIOS,
    BotProcess,
    Chat,
    Harness,
    Scenario,
    assert_quote,
    load_case,
    notice_data,
)

# notice → one message each in zh_Hans, zh_Hant, en, for the case its scenario quotes
# (tests/test_e2e_bot.py SCENARIOS: a subsidised group in every notice).
MESSAGES: dict[str, tuple[str, str, str]] = {
    "shangluo-2024": (
        "我是商洛的低保户 65年8月8号出生 打算2023年11月20号去交 要交多少钱",
        "我是商洛的低保戶 65年8月8號出生 打算2023年11月20號去交 要交多少錢",
        "Shangluo, on minimum living allowance, born 8 August 1965, paying Nov 20 2023",
    ),
    "wulateqianqi-2024": (
        "乌前旗 特困供养 以前没参过保 一九五二年二月二十日生 2023年9月1日交",
        "烏前旗 特困供養 以前沒參過保 一九五二年二月二十日生 2023年9月1日交",
        "Urad Front Banner, extreme poverty, never enrolled, born 20 February 1952, pay 2023-09-01",
    ),
    "fengshan-2023": (
        "武隆凤山街道 低保边缘户 交一档 1962.7.1出生 2022年12月10号交",
        "武隆鳳山街道 低保邊緣戶 交一檔 1962.7.1出生 2022年12月10號交",
        "Fengshan, 低保边缘户, tier 1, born July 1 1962, paying on 10 December 2022",
    ),
    "dalate-2023": (
        "达旗五保户 1950年2月14日出生 22年10月15号交钱",
        "達旗五保戶 1950年2月14日出生 22年10月15號交錢",
        "Dalad Banner, five guarantees household, born 14 Feb 1950, paying Oct 15 2022",
    ),
    "tonghe-2023": (
        "通和县的监测户 身份证230128198502281211 2022年9月1号交",
        "通河縣的監測戶 1985年2月28日出生 2022年9月1號交",
        "Tonghe County, monitored household, born 1985-02-28, pay on 2022-09-01",
    ),
}
LANGUAGES = ("zh-hans", "zh-hant", "en")


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.notice.split("-")[0] for s in SCENARIOS])
def test_everything_in_one_message_in_three_languages(
    harness: Harness, bot: BotProcess, sc: Scenario
) -> None:
    case = load_case(sc.notice, sc.case)
    region_name = notice_data(sc.notice)["region"]["name"]
    base = 5000 + 10 * SCENARIOS.index(sc)
    for index, (language, text) in enumerate(zip(LANGUAGES, MESSAGES[sc.notice], strict=True)):
        chat = Chat(harness.stub, chat_id=base + index, language=language)
        reply = chat.send(text)
        if "edit" not in buttons(reply):
            # One more turn at most: "done" for the groups the message named.
            assert "cat:done" in buttons(reply), reply["text"]
            reply = chat.press("cat:done")
        assert "edit" in buttons(reply), reply["text"]  # the quote, with its edit button
        # The same quote in every language: shown again in Simplified Chinese, it has the
        # notice's figures (fee, subsidy, what to pay now, benefit period).
        chat.send("/lang")
        reply = chat.press("lang:zh_Hans")
        assert_quote(reply["text"], case["expect"], region_name)
    assert bot.alive()


def buttons(message: JSONDict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data", "") for row in markup.get("inline_keyboard", []) for b in row]


def test_a_question_at_the_birth_step_is_answered_then_asked_again(
    harness: Harness, bot: BotProcess
) -> None:
    chat = Chat(harness.stub, chat_id=5100)
    chat.send("/start")
    reply = chat.press("region:shangluo")
    assert ASK_BIRTH in reply["text"]
    after = harness.stub.call_count()
    chat.send("在哪交？")
    texts = chat.texts(after)
    while len(texts) < 2:
        harness.stub.wait_for_message(chat.chat_id, after_index=after + 1, timeout=10)
        texts = chat.texts(after)
    # 商洛市 五（一）1: "按照拟参保户籍地或居住地税务部门公开的缴费渠道主动缴费".
    assert "税务部门公开的缴费渠道" in texts[0] and "〔五（一）1〕" in texts[0]
    assert ASK_BIRTH in texts[1]
    reply = chat.send("一九六五年八月八日")
    assert "✅ 1965年8月8日出生" in reply["text"]

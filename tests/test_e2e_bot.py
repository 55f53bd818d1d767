"""End-to-end: the real ``python -m bot`` process against the local Bot API stand-in.

Every test launches the bot as a subprocess (polling, or webhook in the last test) pointed at
:class:`botapi_stub.BotApiStub` on 127.0.0.1 and drives it like a resident would, by typing and
by pressing the inline buttons the bot actually offered.  The expected figures are read from
the notices' own cases files (``policies/notices/<id>.cases.yaml``), never from the engine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from botapi_stub import BotApiStub, JSONDict

from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
NOTICES = ROOT / "policies" / "notices"
WAIT = 15.0  # seconds, per wait
CHAT = 4242

# Settings read by bot/config.py: never inherit them from the developer's shell.
# Every setting the bot reads: none may leak in from the shell running the tests.
SETTINGS_VARS = frozenset(name.upper() for name in Settings.model_fields)

# What the bot says (locales/templates/messages.html.j2); texts are recorded as sent (HTML).
WELCOME = "<b>居民医保缴费助手</b>"
ASK_REGION = "请选择您参保的地区"
ASK_BIRTH = "请输入<b>出生日期</b>"
ASK_CATEGORIES = "您属于下列哪些人群？"
ASK_TIER = "本地区分档缴费，请选择档次"
ASK_PAYMENT = "请输入<b>缴费日期</b>"
QUOTE_TITLE = "年度居民医保"

# The accepted ways of typing a date (conversations/dates.py, help.html.j2).
DATE_FORMATS: dict[str, Callable[[dt.date], str]] = {
    "iso": lambda d: d.isoformat(),  # 2023-03-10
    "slash": lambda d: f"{d.year}/{d.month}/{d.day}",  # 2023/3/10
    "compact": lambda d: d.strftime("%Y%m%d"),  # 20230310
    "cjk": lambda d: f"{d.year}年{d.month}月{d.day}日",  # 2023年3月10日
}


# ----------------------------------------------------------------------------- cases files


def load_case(notice: str, name: str) -> JSONDict:
    """The case called ``name`` in ``policies/notices/<notice>.cases.yaml``."""
    cases = yaml.safe_load((NOTICES / f"{notice}.cases.yaml").read_text(encoding="utf-8"))
    found = [c for c in cases if c.get("name") == name]
    assert len(found) == 1, f"{notice}.cases.yaml has {len(found)} cases named {name!r}"
    case: JSONDict = found[0]
    assert "expect" in case, f"case {name!r} is an error case"
    return case


def notice_data(notice: str) -> JSONDict:
    data: JSONDict = yaml.safe_load((NOTICES / f"{notice}.yaml").read_text(encoding="utf-8"))
    return data


def category_names(notice: str, ids: list[str]) -> list[str]:
    """Display names of category ids, in the notice's order (as the bot lists them)."""
    cats = notice_data(notice)["categories"]
    return [str(c["name"]) for c in cats if c["id"] in ids]


def money(value: int | None) -> str:
    return "通知未载明" if value is None else f"{value}元"


def day(value: dt.date) -> str:
    return f"{value.year}年{value.month}月{value.day}日"


def assert_quote(html: str, expect: JSONDict, region_name: str) -> None:
    """The quote's summary shows the case's pay_now, subsidy and benefit dates."""
    text = re.sub(r"<[^>]+>", "", html)
    assert QUOTE_TITLE in text and region_name in text, text
    assert expect["eligible"] is True  # the cases used here are all eligible
    subsidy = money(expect["subsidy"])
    if expect["pay_now"] == 0:
        assert "无需缴费" in text and f"代缴 {subsidy}" in text, text
    else:
        assert f"现在需缴：{money(expect['pay_now'])}" in text, text
    if expect.get("subsidy_mode") == "reimbursed":
        assert f"之后补助 {subsidy}" in text, text
        assert f"实际负担 {money(expect['net_cost'])}" in text, text
    elif expect["subsidy"] and expect["pay_now"]:
        assert f"已减去资助 {subsidy}" in text, text
    assert f"{day(expect['benefit_start'])}起" in text, text
    assert f"至 {day(expect['benefit_end'])}" in text, text


# ----------------------------------------------------------------------------- the bot process


@dataclass
class BotProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (PTB shuts down gracefully), SIGKILL if still running after 5 s."""
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def sigkill(self) -> None:
        """A crash: no shutdown code runs, nothing more is confirmed to the API."""
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)
        assert self.proc.returncode == -signal.SIGKILL


class Harness:
    """One stub, one database file, and any number of bot processes launched on them."""

    def __init__(self, stub: BotApiStub, tmp_path: Path) -> None:
        self.stub = stub
        self.tmp_path = tmp_path
        self.db = tmp_path / "bot.db"
        self.bots: list[BotProcess] = []

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.lower().endswith("_proxy") and name.upper() not in SETTINGS_VARS
        }
        env.update(
            NO_PROXY="127.0.0.1,localhost",
            BOT_TOKEN=self.stub.token,
            TELEGRAM_BASE_URL=self.stub.base_url,
            DATABASE_URL=f"sqlite+aiosqlite:///{self.db}",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        )
        env.update(extra)
        return env

    def launch(
        self, ready: str = "getUpdates", args: Sequence[str] = (), **extra: str
    ) -> BotProcess:
        """Start ``python -m bot`` (with ``args``); return once it called setMyCommands
        (post_init ran) and then ``ready`` (getUpdates when polling, setWebhook for a
        webhook)."""
        after = self.stub.call_count()
        log = self.tmp_path / f"bot-{len(self.bots) + 1}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot", *args],
                cwd=self.tmp_path,  # no .env of the repository is read
                env=self.env(extra),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        bot = BotProcess(proc, log)
        self.bots.append(bot)
        index, _ = self.wait_call(bot, "setMyCommands", after)
        self.wait_call(bot, ready, index)
        return bot

    def wait_call(self, bot: BotProcess, method: str, after: int) -> tuple[int, JSONDict]:
        """Wait for the API call ``method`` at call index >= ``after``; fail early if the bot
        process exits meanwhile."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                index, _, params = self.stub.wait_for(
                    lambda m, _p: m == method, timeout=0.5, after_index=after
                )
                return index, params
            except TimeoutError:
                if not bot.alive():
                    raise AssertionError(
                        f"bot exited ({bot.proc.returncode}) before calling {method}:\n"
                        + bot.log.read_text(errors="replace")
                    ) from None
                if time.monotonic() > deadline:
                    raise

    def wait_confirmed(self, update_id: int, after: int = 0) -> None:
        """Wait for a getUpdates whose offset confirms ``update_id`` (the stub drops it)."""
        self.stub.wait_for(
            lambda m, p: m == "getUpdates" and int(p.get("offset") or 0) > update_id,
            timeout=WAIT,
            after_index=after,
        )
        assert update_id not in pending_ids(self.stub)

    def logs(self) -> str:
        return "\n".join(
            f"----- {b.log.name} (pid {b.pid}, rc {b.proc.returncode})\n"
            + b.log.read_text(errors="replace")
            for b in self.bots
        )

    def stop_all(self) -> None:
        for bot in self.bots:
            bot.stop()


def pending_ids(stub: BotApiStub) -> list[int]:
    return [int(u["update_id"]) for u in stub.pending_updates()]


# ----------------------------------------------------------------------------- a resident


class Chat:
    """A resident in a private chat: types text or presses buttons and reads the reply."""

    def __init__(
        self, stub: BotApiStub, chat_id: int = CHAT, language: str | None = "zh-hans"
    ) -> None:
        self.stub = stub
        self.chat_id = chat_id
        self.language = language  # the client's language_code, sent with every update
        self.last_update_id = 0

    def send(self, text: str) -> JSONDict:
        after = self.stub.call_count()
        update = self.stub.send_text(self.chat_id, text, language_code=self.language)
        self.last_update_id = int(update["update_id"])
        return self.reply(after)

    def press(self, data: str) -> JSONDict:
        """Press the button ``data`` of the latest keyboard the bot showed (must be there)."""
        keyboard = self.latest_keyboard()
        offered = [
            button.get("callback_data")
            for row in keyboard["reply_markup"]["inline_keyboard"]
            for button in row
        ]
        assert data in offered, f"no button {data!r} on the latest keyboard: {offered}"
        after = self.stub.call_count()
        update = self.stub.press_button(
            self.chat_id, keyboard["message_id"], data, language_code=self.language
        )
        self.last_update_id = int(update["update_id"])
        return self.reply(after)

    def latest_keyboard(self) -> JSONDict:
        for record in reversed(self.messages()):
            if record["reply_markup"]:
                return record
        raise AssertionError("the bot has shown no keyboard")

    def reply(self, after: int) -> JSONDict:
        return self.stub.wait_for_message(self.chat_id, after_index=after, timeout=WAIT)

    def messages(self, after: int = 0) -> list[JSONDict]:
        return [m for m in self.stub.sent_messages(self.chat_id) if m["index"] >= after]

    def texts(self, after: int = 0) -> list[str]:
        return [str(m["text"]) for m in self.messages(after)]


# ----------------------------------------------------------------------------- 2. commands


RESIDENT_MENU = ["start", "quote", "faq", "subscribe", "unsubscribe", "help", "lang", "cancel"]


def test_registers_commands(harness: Harness) -> None:
    bot = harness.launch(STAFF_IDS="900")
    calls = {
        (json.dumps(p.get("scope"), sort_keys=True), p.get("language_code")): [
            c["command"] for c in p["commands"]
        ]
        for m, p in harness.stub.calls
        if m == "setMyCommands"
    }
    staff_scope = json.dumps({"chat_id": 900, "type": "chat"})
    # Telegram keys menus by two-letter code; staff get theirs in their own chat.
    assert calls == {
        **{("null", code): RESIDENT_MENU for code in (None, "zh", "en")},
        **{
            (staff_scope, code): [*RESIDENT_MENU, "broadcast", "broadcast_status", "reminders"]
            for code in (None, "zh", "en")
        },
    }
    menus = {
        p.get("language_code"): p["commands"]
        for m, p in harness.stub.calls
        if m == "setMyCommands" and not p.get("scope")
    }
    assert menus[None][0]["description"] == menus["zh"][0]["description"] == "开始计算居民医保缴费"
    assert all(c["description"].isascii() for c in menus["en"])
    assert bot.alive()


def test_language_follows_the_client_and_lang_is_remembered(
    harness: Harness, bot: BotProcess
) -> None:
    chat = Chat(harness.stub, chat_id=CHAT + 77, language="zh-hant")
    reply = chat.send("/start")
    assert "請選擇您參保的地區" in reply["text"], reply["text"]
    chat.send("/lang")
    reply = chat.press("lang:en")
    assert "region" in reply["text"].lower() and "请选择" not in reply["text"]
    reply = chat.send("/start")  # the client still says zh-hant: the choice wins
    assert "Welcome" in reply["text"] or "region" in reply["text"].lower(), reply["text"]
    reply = chat.press("region:shangluo")
    assert "Shangluo" in reply["text"], reply["text"]


# ----------------------------------------------------------------------------- 3. five regions


@dataclass(frozen=True)
class Scenario:
    notice: str  # policies/notices/<notice>.cases.yaml
    case: str  # the case reproduced (its name in that file)
    region_text: str | None  # typed region; None: press region:<id>
    birth: str  # DATE_FORMATS key the birth date is typed in
    category_texts: tuple[str, ...]  # typed phrases; empty: press cat:<id> buttons
    done_text: str | None  # typed word ending the categories; None: press cat:done
    payment: str  # DATE_FORMATS key, or "offered": press 今天, then the offered trial date


SCENARIOS = [
    # Everything typed.  Case: shangluo-2024 "低保对象，集中缴费期，定额资助190元".
    Scenario(
        notice="shangluo-2024",
        case="低保对象，集中缴费期，定额资助190元",
        region_text="商洛",
        birth="cjk",
        category_texts=("我是低保户",),
        done_text="完成",
        payment="compact",
    ),
    # Buttons wherever the bot offers them (the birth date can only be typed); the payment
    # date is 今天 (not covered by any notice) and then the trial date the bot offers.
    # Case: wulateqianqi-2024 "新参保的特困供养人员——全额代缴，须先登记" (paid 2023-09-01).
    Scenario(
        notice="wulateqianqi-2024",
        case="新参保的特困供养人员——全额代缴，须先登记",
        region_text=None,
        birth="slash",
        category_texts=(),
        done_text=None,
        payment="offered",
    ),
    # Tiers: region and tier by button, category typed, done by button.
    # Case: fengshan-2023 "低保边缘户一档，2022-12-10缴费，资助245元自付105元".
    Scenario(
        notice="fengshan-2023",
        case="低保边缘户一档，2022-12-10缴费，资助245元自付105元",
        region_text=None,
        birth="slash",
        category_texts=("低保边缘户",),
        done_text=None,
        payment="iso",
    ),
    # Region typed, category by buttons.
    # Case: dalate-2023 "特困人员（含五保），集中参保期，旗财政全额代缴".
    Scenario(
        notice="dalate-2023",
        case="特困人员（含五保），集中参保期，旗财政全额代缴",
        region_text="达拉特旗",
        birth="compact",
        category_texts=(),
        done_text=None,
        payment="slash",
    ),
    # Region by button, category by button and "done" typed.
    # Case: tonghe-2023 "纳入监测范围的农村易返贫致贫人口，60%定额资助".
    Scenario(
        notice="tonghe-2023",
        case="纳入监测范围的农村易返贫致贫人口，60%定额资助",
        region_text=None,
        birth="iso",
        category_texts=(),
        done_text="好了",
        payment="cjk",
    ),
]


def start_chat(chat: Chat) -> None:
    reply = chat.send("/start")
    assert WELCOME in reply["text"] and ASK_REGION in reply["text"]


def run_scenario(chat: Chat, sc: Scenario, case: JSONDict) -> JSONDict:
    """Drive the whole conversation for ``case``; returns the quote message."""
    given = case["input"]
    notice = notice_data(sc.notice)
    region_id, region_name = notice["region"]["id"], notice["region"]["name"]
    assert given.get("region", region_id) == region_id
    categories: list[str] = list(given.get("categories") or [])

    start_chat(chat)
    if sc.region_text is not None:
        reply = chat.send(sc.region_text)
    else:
        reply = chat.press(f"region:{region_id}")
    assert ASK_BIRTH in reply["text"] and f"地区：{region_name}" in reply["text"]

    reply = chat.send(DATE_FORMATS[sc.birth](given["birth_date"]))
    assert ASK_CATEGORIES in reply["text"]

    if sc.category_texts:
        # A typed group answers the question: the reply names it and asks the next one.
        for phrase in sc.category_texts:
            reply = chat.send(phrase)
        assert f"✅ {'、'.join(category_names(sc.notice, categories))}" in reply["text"]
    else:
        for cat in categories:
            reply = chat.press(f"cat:{cat}")
            assert reply["method"] == "editMessageText" and ASK_CATEGORIES in reply["text"]
        assert f"已选：{'、'.join(category_names(sc.notice, categories))}" in reply["text"]
        if sc.done_text is not None:
            reply = chat.send(sc.done_text)
        else:
            reply = chat.press("cat:done" if categories else "cat:none")

    if "tier" in given:
        assert ASK_TIER in reply["text"]
        reply = chat.press(f"tier:{given['tier']}")

    assert ASK_PAYMENT in reply["text"]
    paid: dt.date = given["date"]
    if sc.payment == "offered":
        reply = chat.press("pay:today")
        assert "没有覆盖" in reply["text"], reply["text"]
        reply = chat.press(f"pay:{paid.isoformat()}")
    else:
        reply = chat.send(DATE_FORMATS[sc.payment](paid))
    assert f"按 {paid.year}年{paid.month}月{paid.day}日 缴费计算" in reply["text"], reply["text"]
    return reply


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.notice.split("-")[0] for s in SCENARIOS])
def test_full_conversation(harness: Harness, bot: BotProcess, sc: Scenario) -> None:
    case = load_case(sc.notice, sc.case)
    # Every scenario picks a category with a subsidy.
    assert case["input"].get("categories") and case["expect"]["subsidy"] > 0
    chat = Chat(harness.stub)
    quote = run_scenario(chat, sc, case)
    assert_quote(quote["text"], case["expect"], notice_data(sc.notice)["region"]["name"])
    if "tier" in case["input"]:
        assert "· 一档" in quote["text"] or "· 二档" in quote["text"]
    # The quote comes with its edit / restart buttons.
    buttons = [b["callback_data"] for row in quote["reply_markup"]["inline_keyboard"] for b in row]
    assert "edit" in buttons and "restart" in buttons
    # The timeline picture goes as an uploaded PNG with its caption and the buttons.
    picture = chat.press("qd:pic")
    assert picture["method"] == "sendPhoto" and "时间轴" in picture["text"], picture
    assert picture["photo"]["content"].startswith(b"\x89PNG") and picture["reply_markup"]
    why = chat.press("qd:why")  # the notice by title and number, never its file
    assert notice_data(sc.notice)["document"]["title"] in why["text"]
    assert notice_data(sc.notice)["document"]["file"] not in why["text"]
    assert bot.alive()


# ----------------------------------------------------------------------------- 4. bad input


def test_bad_birth_dates_are_asked_again(harness: Harness, bot: BotProcess) -> None:
    # Case: tonghe-2023 "低保对象，60%定额资助".
    case = load_case("tonghe-2023", "低保对象，60%定额资助")
    chat = Chat(harness.stub)
    start_chat(chat)
    reply = chat.send("通河")
    assert ASK_BIRTH in reply["text"] and "地区：通河县" in reply["text"]

    reply = chat.send("2023-02-30")
    assert "“2023-02-30”这一天不存在" in reply["text"], reply["text"]
    assert "重新输入出生日期" in reply["text"] and ASK_BIRTH in reply["text"]
    assert "地区：通河县" in reply["text"]  # the region answer is kept

    reply = chat.send("abc")
    assert "没看懂“abc”这个日期" in reply["text"], reply["text"]
    assert ASK_BIRTH in reply["text"] and "地区：通河县" in reply["text"]

    reply = chat.send(DATE_FORMATS["iso"](case["input"]["birth_date"]))
    assert ASK_CATEGORIES in reply["text"]
    chat.press("cat:dibao")
    reply = chat.press("cat:done")
    assert ASK_PAYMENT in reply["text"]
    quote = chat.send(DATE_FORMATS["iso"](case["input"]["date"]))
    assert_quote(quote["text"], case["expect"], "通河县")
    # The region was asked once, in the welcome; never again.
    assert sum(ASK_REGION in t for t in chat.texts()) == 1


# ----------------------------------------------------------------------------- 5. crashes


def test_resume_after_kill(harness: Harness, bot: BotProcess) -> None:
    # Case: dalate-2023 "城乡低保对象，集中参保期，先缴后补330元（旗民政局、乡村振兴统筹发展中心）".
    case = load_case(
        "dalate-2023", "城乡低保对象，集中参保期，先缴后补330元（旗民政局、乡村振兴统筹发展中心）"
    )
    given = case["input"]
    chat = Chat(harness.stub)
    start_chat(chat)
    chat.press("region:dalate")
    reply = chat.send(DATE_FORMATS["cjk"](given["birth_date"]))
    assert ASK_CATEGORIES in reply["text"]
    reply = chat.send("低保")  # a typed group answers the question
    assert ASK_PAYMENT in reply["text"]
    # Acknowledged: answered, and the update confirmed to the API (offset moved past it).
    harness.wait_confirmed(chat.last_update_id)

    bot.sigkill()
    restart = harness.stub.call_count()
    harness.launch()
    assert not pending_ids(harness.stub)

    after = harness.stub.call_count()
    quote = chat.send(DATE_FORMATS["iso"](given["date"]))
    assert quote["index"] >= after
    assert_quote(quote["text"], case["expect"], "达拉特旗")
    # After the restart the bot said nothing but the quote: no question asked again.
    assert chat.texts(restart) == [quote["text"]]


def test_unconfirmed_update_is_not_handled_twice(harness: Harness, bot: BotProcess) -> None:
    # Case: wulateqianqi-2024 "单纯低保户，医保局代缴200元，个人缴纳200元，缴费时间另行通知".
    case = load_case(
        "wulateqianqi-2024", "单纯低保户，医保局代缴200元，个人缴纳200元，缴费时间另行通知"
    )
    given = case["input"]
    stub = harness.stub
    chat = Chat(stub)
    start_chat(chat)
    chat.press("region:wulateqianqi")

    # The stub forgets an update only when a getUpdates with a higher offset arrives, and PTB
    # sends that right after fetching (before handling) it.  Make every getUpdates that would
    # confirm the next update fail, as if the bot died before that request got through.
    birth_update = chat.last_update_id + 1
    stub.fail_next(
        "getUpdates",
        502,
        "Bad Gateway",
        count=1_000_000,
        when=lambda p: int(p.get("offset") or 0) > birth_update,
    )
    first = chat.send(DATE_FORMATS["iso"](given["birth_date"]))
    assert chat.last_update_id == birth_update
    assert ASK_CATEGORIES in first["text"]
    # Handled to the end (the reply left the outbox): the bot tries to confirm it.
    stub.wait_for(lambda m, p: m == "getUpdates" and int(p.get("offset") or 0) > birth_update)
    bot.sigkill()
    assert birth_update in pending_ids(stub)  # Telegram would deliver it again

    stub.clear_faults()
    restart = stub.call_count()
    harness.launch()
    harness.wait_confirmed(birth_update, restart)  # it was delivered again and confirmed
    # Its reply had been sent: nothing is sent again, and the birth date was not taken as
    # an answer to the categories question.
    assert chat.texts(restart) == []

    chat.press("cat:dibao_only")
    reply = chat.press("cat:done")
    assert ASK_PAYMENT in reply["text"]
    quote = chat.send(DATE_FORMATS["slash"](given["date"]))
    assert_quote(quote["text"], case["expect"], "乌拉特前旗")
    texts = chat.texts(restart)
    assert first["text"] not in texts and not any("没有从" in t for t in texts)
    assert not any(ASK_BIRTH in t or ASK_REGION in t for t in texts)


def test_an_update_is_confirmed_only_after_it_is_handled(harness: Harness) -> None:
    """Issue 13, "intake confirms before handling": the bot is killed while an update is
    being handled (the database is locked by another process, so handling waits); on
    restart the update comes again and is handled: nothing lost."""
    import sqlite3

    bot = harness.launch()
    chat = Chat(harness.stub)
    start_chat(chat)
    lock = sqlite3.connect(harness.db, timeout=10)
    lock.execute("BEGIN EXCLUSIVE")  # the bot cannot commit (busy_timeout 5 s)
    update = harness.stub.send_text(CHAT, "/help", language_code="zh-hans")
    time.sleep(1.0)  # fetched, waiting for the database
    bot.sigkill()
    lock.rollback()
    lock.close()
    assert int(update["update_id"]) in pending_ids(harness.stub)  # not confirmed
    restart = harness.stub.call_count()
    harness.launch()
    harness.wait_confirmed(int(update["update_id"]), restart)
    assert any("/start" in t for t in chat.texts(restart)), chat.texts(restart)


# ----------------------------------------------------------------------------- 6. webhook


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_update(update_id: int, chat_id: int) -> JSONDict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "from": {"id": chat_id, "is_bot": False, "first_name": "Resident"},
            "chat": {"id": chat_id, "type": "private", "first_name": "Resident"},
            "date": int(time.time()),
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }


def post(url: str, update: JSONDict, secret: str | None) -> int:
    """POST an update to the bot's webhook (retrying until its server listens)."""
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    deadline = time.monotonic() + WAIT
    with httpx.Client(trust_env=False, timeout=WAIT) as client:
        while True:
            try:
                return client.post(url, json=update, headers=headers).status_code
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # the server starts right after setWebhook


def test_webhook(harness: Harness) -> None:
    stub = harness.stub
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    before = stub.call_count()
    bot = harness.launch(
        ready="setWebhook",
        WEBHOOK_URL=url,
        WEBHOOK_LISTEN="127.0.0.1",
        WEBHOOK_PORT=str(port),
        WEBHOOK_SECRET="s3cret",
    )
    hooks = [p for m, p in stub.calls[before:] if m == "setWebhook"]
    assert len(hooks) == 1
    assert hooks[0]["url"] == url and hooks[0]["secret_token"] == "s3cret"

    intruder = 5151
    assert post(url, start_update(1, intruder), "wrong") == 403
    assert post(url, start_update(2, intruder), None) == 403
    sent = stub.call_count()
    assert post(url, start_update(3, CHAT), "s3cret") == 200
    welcome = stub.wait_for_message(CHAT, contains=WELCOME, after_index=sent, timeout=WAIT)
    assert ASK_REGION in welcome["text"]

    assert [m["text"] for m in stub.sent_messages(CHAT)] == [welcome["text"]]
    assert stub.sent_messages(intruder) == []
    assert "getUpdates" not in [m for m, _ in stub.calls[before:]]  # no polling
    assert bot.alive()


# ----------------------------------------------------------------------------- 7. FAQ


def test_faq_over_telegram_with_staff_extras(harness: Harness) -> None:
    staff_chat = CHAT + 500
    harness.launch(STAFF_IDS=str(staff_chat))
    resident = Chat(harness.stub, chat_id=CHAT + 400)
    # 商洛市 二（二）: 低保对象 190 元定额资助; the region is asked, then answered.
    reply = resident.send("低保户能补多少")
    assert "哪个地区" in reply["text"], reply["text"]
    reply = resident.press("faqregion:shangluo")
    assert "190" in reply["text"] and "〔二（二）〕" in reply["text"]
    assert "工作人员" not in reply["text"]
    staff = Chat(harness.stub, chat_id=staff_chat)
    reply = staff.send("/faq")
    reply = staff.send("商洛低保户交多少")
    assert "条款全文（工作人员可见）" in reply["text"], reply["text"]


def launch_webhook(harness: Harness, **extra: str) -> tuple[BotProcess, str, JSONDict]:
    """A bot in webhook mode; returns it, its URL and the setWebhook call it made."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    before = harness.stub.call_count()
    bot = harness.launch(
        ready="setWebhook",
        WEBHOOK_URL=url,
        WEBHOOK_LISTEN="127.0.0.1",
        WEBHOOK_PORT=str(port),
        **extra,
    )
    [hook] = [p for m, p in harness.stub.calls[before:] if m == "setWebhook"]
    return bot, url, hook


def test_webhook_without_a_configured_secret_makes_one_up(harness: Harness) -> None:
    """Issue 13, "webhook without a secret lets anyone act as staff": with no
    WEBHOOK_SECRET the bot registers a secret it made up, and refuses posts without it."""
    bot, url, hook = launch_webhook(harness, STAFF_IDS=str(CHAT))
    secret = str(hook.get("secret_token") or "")
    assert len(secret) >= 32
    assert post(url, start_update(1, CHAT), None) == 403
    assert post(url, start_update(2, CHAT), "guess") == 403
    assert harness.stub.sent_messages(CHAT) == []
    sent = harness.stub.call_count()
    assert post(url, start_update(3, CHAT), secret) == 200
    # Answered 200 only once handled: the reply was sent before the response.
    assert any(WELCOME in (m["text"] or "") for m in harness.stub.sent_messages(CHAT)), sent
    assert bot.alive()


def test_webhook_refuses_bodies_that_are_not_json_or_too_large(harness: Harness) -> None:
    """Issue 13: a non-JSON body gets 400 (not 500), a body over the cap is refused."""
    bot, url, _ = launch_webhook(harness, WEBHOOK_SECRET="s3cret")
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret", "Content-Type": "application/json"}
    post(url, start_update(1, CHAT), "s3cret")  # waits for the server
    with httpx.Client(trust_env=False, timeout=WAIT) as client:
        assert client.post(url, content=b"{not json", headers=headers).status_code == 400
        assert client.post(url, content=b"[1, 2]", headers=headers).status_code == 400
        huge = json.dumps(start_update(2, CHAT) | {"pad": "x" * 2_000_000}).encode()
        with contextlib.suppress(httpx.HTTPError):  # the server may close the connection
            assert client.post(url, content=huge, headers=headers).status_code >= 400
    assert post(url, start_update(3, CHAT + 1), "s3cret") == 200
    assert bot.alive()


def test_an_unparseable_update_leaves_no_message_text_in_the_logs(harness: Harness) -> None:
    """Issue 13, "python-telegram-bot logs the raw update JSON at CRITICAL when it cannot
    parse one": the update is skipped, the logs name it by id only, the bot goes on."""
    harness.launch()
    with harness.stub._cond:
        bad = harness.stub._queue_update(
            {
                "message": {
                    "message_id": 1,
                    "date": "not a date",
                    "chat": {"id": CHAT, "type": "private"},
                    "from": {"id": CHAT, "is_bot": False, "first_name": "王秘密"},
                    "text": "我生于1961-07-23，是低保户",
                }
            }
        )
    chat = Chat(harness.stub)
    start_chat(chat)  # the next update is handled
    harness.wait_confirmed(int(bad["update_id"]))
    logs = harness.logs()
    assert "1961-07-23" not in logs and "低保户" not in logs and "王秘密" not in logs

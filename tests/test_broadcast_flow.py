"""Subscriptions, the staff broadcast flow and scheduled reminders, through the service.

The conversation is driven as the bot drives it (``ConversationService.process``) on
SQLite and PostgreSQL; nothing is sent here (the delivery worker has its own tests). The
dates and figures come from the notices: 商洛市's concentrated collection ends on
2023-12-20 ("全市居民医保集中缴费期为2023年9月至12月20日", file 004, clause 四（一）1), so
its reminders fall on 2023-12-13 (7 days) and 2023-12-19 (1 day); 乌拉特前旗's notice
gives no end of collection, so it has none.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_delivery import wipe_broadcasts

from bot import reminders
from bot.broadcast_store import BroadcastStore
from bot.service import ConversationService
from bot.storage import Store
from conversations import announcements
from conversations.state import Command, Press, QueueBroadcast, Reply, Text
from policies.loader import default_library

CHINA = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parent.parent
STAFF = 900
LIBRARY = default_library()
NOTICES = {n.region.id: n for n in LIBRARY.regions()}


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = Store(database_url)
    await s.init()
    yield s
    await s._run(wipe_broadcasts, commit=True)  # the PostgreSQL server is shared by the whole run
    await s.purge(dt.datetime.max.replace(tzinfo=dt.UTC))
    await s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2023, 12, 1, 10, 0, tzinfo=CHINA))


@pytest.fixture
def svc(store: Store, clock: Clock) -> ConversationService:
    return ConversationService(store, LIBRARY, clock=clock)


def buttons(reply: Reply) -> dict[str, str]:
    """data → label of every button."""
    return {b.data: b.label for row in reply.buttons for b in row}


async def say(
    svc: ConversationService,
    chat: int,
    event: Command | Press | Text,
    lang: str | None = "zh-hans",
    staff: bool = False,
) -> list[Reply]:
    return await svc.process(chat, event, language_code=lang, staff=staff)


# ----------------------------------------------------------------------------- residents


async def test_subscribe_asks_the_region_when_the_chat_has_none(svc: ConversationService) -> None:
    [ask] = await say(svc, 1, Command("subscribe"))
    assert set(buttons(ask)) == {f"sub:{r}" for r in NOTICES}
    [done] = await say(svc, 1, Press("sub:shangluo"))
    assert "已订阅商洛市的居民医保公告" in done.html
    assert "/unsubscribe" in done.html
    found = await svc.broadcasts.subscription(1)
    assert found is not None
    sub, active = found
    assert (sub.region, sub.language, active) == ("shangluo", "zh_Hans", True)


async def test_subscribe_takes_the_region_of_the_quote_and_the_quote_offers_it(
    svc: ConversationService,
) -> None:
    await say(svc, 2, Command("start"), lang="en")
    await say(svc, 2, Press("region:tonghe"), lang="en")
    await say(svc, 2, Text("1980-05-01"), lang="en")
    [quote] = await say(svc, 2, Press("cat:none"), lang="en")
    if "pay:today" in buttons(quote):  # a region that asks the payment date
        [quote] = await say(svc, 2, Text("2022-11-01"), lang="en")
    assert "sub:tonghe" in buttons(quote)
    assert "Tonghe" in buttons(quote)["sub:tonghe"]
    [done] = await say(svc, 2, Command("subscribe"), lang="en")
    assert "Tonghe" in done.html and "/unsubscribe" in done.html
    assert await svc.broadcasts.audience("tonghe") == {"en": 1}


async def test_unsubscribe_and_a_language_change_reach_the_subscription(
    svc: ConversationService,
) -> None:
    await say(svc, 3, Command("subscribe"))
    await say(svc, 3, Press("sub:dalate"))
    await say(svc, 3, Command("lang"))
    await say(svc, 3, Press("lang:zh_Hant"))
    assert await svc.broadcasts.audience("dalate") == {"zh_Hant": 1}
    [bye] = await say(svc, 3, Command("unsubscribe"))
    assert "已退訂達拉特旗" in bye.html
    assert await svc.broadcasts.audience("dalate") == {}
    [again] = await say(svc, 3, Command("unsubscribe"))
    assert "/subscribe" in again.html and "達拉特旗" not in again.html


# ----------------------------------------------------------------------------- staff


@pytest.mark.parametrize(
    "event",
    [Command("broadcast"), Command("broadcast_status"), Command("reminders"), Press("bc:send")],
)
async def test_everyone_not_on_the_staff_list_is_refused_and_audited(
    svc: ConversationService, event: Command | Press
) -> None:
    [reply] = await svc.process(42, event, language_code="en", user_id=4242)
    assert "only for insurance staff" in reply.html
    assert not reply.buttons
    [record] = await svc.broadcasts.audit_log()
    assert (record["actor"], record["action"]) == (4242, "refused")


async def subscribe(svc: ConversationService, chats: dict[int, str], region: str) -> None:
    for chat, language in chats.items():
        await svc.broadcasts.subscribe(chat, region, language)


async def test_broadcast_preview_confirm_queue_status_cancel(
    svc: ConversationService, clock: Clock
) -> None:
    residents = {11: "zh_Hans", 12: "zh_Hans", 13: "en", 14: "zh_Hant"}
    await subscribe(svc, residents, "shangluo")
    await subscribe(svc, {20: "zh_Hans"}, "dalate")

    [templates] = await say(svc, STAFF, Command("broadcast"), staff=True)
    assert [d for d in buttons(templates) if d.startswith("bc:t:")] == [
        f"bc:t:{t}" for t in announcements.TEMPLATES
    ]
    # 2023-12-01: 乌拉特前旗 states no end of collection, and every other region's
    # stated deadlines before 2023-12-01 are past, except 商洛市's 2023-12-20.
    [regions] = await say(svc, STAFF, Press("bc:t:deadline"), staff=True)
    assert [d for d in buttons(regions) if d.startswith("bc:r:")] == ["bc:r:shangluo"]
    assert "乌拉特前旗不可用：乌拉特前旗的通知没有写明缴费期在哪一天截止" in regions.html

    preview, summary = await say(svc, STAFF, Press("bc:r:shangluo"), staff=True)
    notice = NOTICES["shangluo"]
    assert preview.html == announcements.render("deadline", notice, "zh_Hans", clock().date())
    assert "还有 19 天截止" in preview.html and "2023年12月20日" in preview.html
    assert "将发给商洛市的 4 位订阅者" in summary.html
    assert "简体中文 2 人、繁體中文 1 人、English 1 人" in summary.html
    assert set(buttons(summary)) == {"bc:l:zh_Hant", "bc:l:en", "bc:send", "bc:quit"}

    english, _ = await say(svc, STAFF, Press("bc:l:en"), staff=True)
    assert english.html == announcements.render("deadline", notice, "en", clock().date())
    assert "Deadline: December 20, 2023" in english.html

    [queued] = await say(svc, STAFF, Press("bc:send"), staff=True)
    [progress] = await svc.broadcasts.recent()
    assert (progress.template, progress.region, progress.total) == ("deadline", "shangluo", 4)
    assert progress.notify_chat == STAFF
    assert f"公告 #{progress.broadcast_id}（缴费截止提醒）已排队，共 4 位订阅者" in queued.html
    assert f"bc:stop:{progress.broadcast_id}" in buttons(queued)
    texts = await svc.broadcasts.texts(progress.broadcast_id)
    assert texts == {
        lang: announcements.render("deadline", notice, lang, clock().date())
        for lang in ("zh_Hans", "zh_Hant", "en")
    }

    # The confirm button pressed again: the draft is gone, nothing more is queued.
    [again] = await say(svc, STAFF, Press("bc:send"), staff=True)
    assert "没有正在准备的公告" in again.html
    assert len(await svc.broadcasts.recent()) == 1

    [status] = await say(svc, STAFF, Command("broadcast_status"), staff=True)
    assert "排队中" in status.html and "剩余 4（共 4）" in status.html
    [cancelled] = await say(svc, STAFF, Press(f"bc:stop:{progress.broadcast_id}"), staff=True)
    assert "已取消：已发送 0，未发送 4" in cancelled.html
    actions = [(r["actor"], r["action"]) for r in await svc.broadcasts.audit_log()]
    assert actions == [(STAFF, "broadcast"), (STAFF, "cancel")]


async def test_a_confirm_delivered_twice_queues_once(
    svc: ConversationService, clock: Clock
) -> None:
    clock.now = dt.datetime(2023, 1, 10, 10, 0, tzinfo=CHINA)  # 达拉特旗 二（二）: to 2023-02-28
    await subscribe(svc, {31: "zh_Hans"}, "dalate")
    await svc.receive(STAFF, Command("broadcast"), update_id=1, staff=True)
    await svc.receive(STAFF, Press("bc:t:collection_opens"), update_id=2, staff=True)
    await svc.receive(STAFF, Press("bc:r:dalate"), update_id=3, staff=True)
    first = await svc.receive(STAFF, Press("bc:send"), update_id=4, staff=True)
    again = await svc.receive(STAFF, Press("bc:send"), update_id=4, staff=True)
    assert first == again
    assert len(await svc.broadcasts.recent()) == 1


async def test_a_region_without_subscribers_offers_no_send(
    svc: ConversationService, clock: Clock
) -> None:
    clock.now = dt.datetime(2023, 6, 1, 10, 0, tzinfo=CHINA)  # 通河县: newborns to 2023-08-31
    await say(svc, STAFF, Command("broadcast"), staff=True)
    await say(svc, STAFF, Press("bc:t:newborn"), staff=True)
    preview, summary = await say(svc, STAFF, Press("bc:r:tonghe"), staff=True)
    assert "新生儿" in preview.html
    assert "通河县目前没有订阅者，无需发送" in summary.html
    assert "bc:send" not in buttons(summary)


# ----------------------------------------------------------------------------- reminders


async def test_reminders_go_out_on_the_notice_dates_once_when_switched_on(
    svc: ConversationService, clock: Clock
) -> None:
    await subscribe(svc, {51: "zh_Hans", 52: "en"}, "shangluo")
    [listing] = await say(svc, STAFF, Command("reminders"), staff=True)
    assert "商洛市：未开启；2023年12月13日（截止前 7 天），2023年12月19日（截止前 1 天）" in (
        listing.html
    )
    assert "乌拉特前旗：未开启；通知没有写明今后的截止日期" in listing.html
    assert "rem:on:shangluo" in buttons(listing)
    assert "rem:on:wulateqianqi" not in buttons(listing)

    clock.now = dt.datetime(2023, 12, 13, 10, 0, tzinfo=CHINA)
    assert await reminders.queue_due(svc, clock()) == []  # not switched on yet

    [switched] = await say(svc, STAFF, Press("rem:on:shangluo"), staff=True)
    assert "商洛市：已开启" in switched.html and "rem:off:shangluo" in buttons(switched)

    clock.now = dt.datetime(2023, 12, 13, 8, 59, tzinfo=CHINA)
    assert await reminders.queue_due(svc, clock()) == []  # before 9 o'clock
    clock.now = dt.datetime(2023, 12, 13, 9, 0, tzinfo=CHINA)
    [first] = await reminders.queue_due(svc, clock())
    assert await reminders.queue_due(svc, clock()) == []  # once, however often it runs
    texts = await svc.broadcasts.texts(first)
    assert "还有 7 天截止" in texts["zh_Hans"] and "2023年12月20日" in texts["zh_Hans"]
    assert "ends in 7 days" in texts["en"]

    clock.now = dt.datetime(2023, 12, 15, 12, 0, tzinfo=CHINA)
    assert await reminders.queue_due(svc, clock()) == []  # no reminder that day
    clock.now = dt.datetime(2023, 12, 19, 9, 30, tzinfo=CHINA)
    [second] = await reminders.queue_due(svc, clock())
    assert "明天截止" in (await svc.broadcasts.texts(second))["zh_Hans"]

    await say(svc, STAFF, Press("rem:off:shangluo"), staff=True)
    clock.now = dt.datetime(2024, 6, 23, 9, 30, tzinfo=CHINA)  # 7 days before 补缴 ends
    assert await reminders.queue_due(svc, clock()) == []
    switches = [r["detail"] for r in await svc.broadcasts.audit_log() if r["action"] == "reminders"]
    assert switches == ["region=shangluo enabled=True", "region=shangluo enabled=False"]


# ----------------------------------------------------------------------------- the CLI


def cli(tmp_path: Path, *args: str, staff_ids: str = "900") -> subprocess.CompletedProcess[str]:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/bot.db",
        "STAFF_IDS": staff_ids,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", "broadcast", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


async def test_the_cli_queues_for_staff_only_and_once_per_key(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    await store.init()
    bs = BroadcastStore(store)
    for chat, lang in {61: "zh_Hans", 62: "en", 63: "zh_Hans"}.items():
        await bs.subscribe(chat, "fengshan", lang)
    # Within 凤山县's benefit year 2023 (the subsidies it lists are that year's).
    args = ("--template", "subsidy_groups", "--region", "fengshan", "--date", "2023-06-01")

    refused = cli(tmp_path, *args)
    assert refused.returncode == 2 and "--staff-id" in refused.stderr
    assert cli(tmp_path, *args, "--staff-id", "901").returncode == 2

    done = cli(tmp_path, *args, "--staff-id", "900", "--key", "monday")
    assert done.returncode == 0, done.stderr
    assert "已排队公告 #1" in done.stdout and "3 位订阅者" in done.stdout
    rerun = cli(tmp_path, *args, "--staff-id", "900", "--key", "monday")
    assert "已排队公告 #1" in rerun.stdout

    [progress] = await bs.recent()
    assert (progress.total, progress.pending, progress.status) == (3, 3, "queued")
    texts = await bs.texts(1)
    assert texts["en"] == announcements.render("subsidy_groups", NOTICES["fengshan"], "en")
    [record] = await bs.audit_log()
    assert (record["actor"], record["detail"]) == (
        900,
        "template=subsidy_groups region=fengshan recipients=3",
    )
    await store.close()


# ------------------------------------------------------------------ stale announcements


async def test_the_bot_offers_no_announcement_whose_dates_are_past(
    svc: ConversationService, clock: Clock
) -> None:
    """达拉特旗 二（二）: the concentrated period runs 2022-09-01 to 2023-02-28; its
    collection_opens announcement may go out on the last day, not the day after."""
    clock.now = dt.datetime(2023, 2, 28, 10, 0, tzinfo=CHINA)
    await say(svc, STAFF, Command("broadcast"), staff=True)
    [regions] = await say(svc, STAFF, Press("bc:t:collection_opens"), staff=True)
    assert "bc:r:dalate" in buttons(regions)
    await say(svc, STAFF, Command("cancel"), staff=True)

    clock.now = dt.datetime(2023, 3, 1, 10, 0, tzinfo=CHINA)
    await say(svc, STAFF, Command("broadcast"), staff=True)
    [regions] = await say(svc, STAFF, Press("bc:t:collection_opens"), staff=True)
    assert "bc:r:dalate" not in buttons(regions)
    assert "达拉特旗这则公告所说的日期已于2023年2月28日过去" in regions.html, regions.html
    # Queued anyway (a preview confirmed after midnight): refused the same way.
    action = QueueBroadcast(
        template="collection_opens", region="dalate", day=clock().date(), key="late"
    )
    assert await svc.queue(action, STAFF, STAFF, "zh_Hans") is None


async def test_the_cli_refuses_what_the_bot_refuses_and_defaults_to_today(
    tmp_path: Path,
) -> None:
    """商洛市 四（一）: benefits run 2024-01-01 to 2024-12-31; subsidy_groups speaks of that
    year. Without --date the CLI takes today, which is later than that."""
    args = ("--template", "subsidy_groups", "--region", "shangluo", "--staff-id", "900")
    assert dt.date.today() > dt.date(2024, 12, 31)
    today = cli(tmp_path, *args)
    assert today.returncode == 2
    assert today.stderr.strip() == "错误：商洛市这则公告所说的日期已于2024-12-31过去，不能再发送"
    late = cli(tmp_path, *args, "--date", "2025-01-01")
    assert late.returncode == 2 and "已于2024-12-31过去" in late.stderr
    in_time = cli(tmp_path, *args, "--date", "2024-12-31")
    assert in_time.returncode == 0, in_time.stderr
    assert "已排队公告 #1" in in_time.stdout

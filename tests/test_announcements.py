"""Announcement templates: every template a notice supports renders in every locale, with
figures that the notices' own texts give (read off the texts, not copied from the code)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.console import plain
from conversations import announcements
from conversations.announcements import TEMPLATES, available, reminder_dates, render
from conversations.i18n import LOCALES
from policies.loader import default_library
from policies.models import Notice

ROOT = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u3400-\u9fff]")


def _notice(region: str) -> Notice:
    notice = default_library().latest(region)
    assert notice is not None, region
    return notice


def _outside_quotes_and_brackets(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"“[^“”]*”|\([^()]*\)|（[^（）]*）|〔[^〔〕]*〕", "", text)
    return text


def _supported() -> list[object]:
    return [
        pytest.param(n.region.id, t, id=f"{n.region.id}:{t}")
        for n in default_library().regions()
        for t in TEMPLATES
        if available(n)[t] is None
    ]


@pytest.mark.parametrize(("region", "template"), _supported())
def test_every_supported_template_renders_in_every_locale(region: str, template: str) -> None:
    notice = _notice(region)
    texts = {locale: render(template, notice, locale) for locale in LOCALES}
    for locale, text in texts.items():
        assert text.strip() and "〔" in text, (locale, text)  # figures carry their clauses
        assert "\n\n\n" not in text
    english = [
        line for line in _outside_quotes_and_brackets(texts["en"]).splitlines() if CJK.search(line)
    ]
    assert not english, english
    assert texts["zh_Hant"] != texts["zh_Hans"]


def test_each_template_is_supported_somewhere_and_reasons_are_given() -> None:
    notices = default_library().regions()
    assert len(TEMPLATES) >= 5
    for template in TEMPLATES:
        assert any(available(n)[template] is None for n in notices), template
    # 通河县 四: only the concentrated period (and newborns after it); 乌拉特前旗 三: only
    # the start of collection, so neither a late window nor a stated deadline.
    tonghe, wqq = _notice("tonghe"), _notice("wulateqianqi")
    assert available(tonghe)["late_payment"] is not None
    assert available(wqq)["late_payment"] is not None
    reason = available(wqq)["deadline"]
    assert reason is not None and "乌拉特前旗" in reason.zh()
    with pytest.raises(announcements.Unavailable):
        render("late_payment", tonghe, "zh_Hans")


def test_shangluo_concentrated_period_and_fee() -> None:
    # 商洛市 四: "全市居民医保集中缴费期为2023年9月至12月20日"; 一（三）: "每人每年380元".
    text = plain(render("collection_opens", _notice("shangluo"), "zh_Hans"))
    assert "2023年12月20日〔四〕" in text
    assert "380元〔一（三）〕" in text
    assert "2024年1月1日 至 2024年12月31日" in text  # 四（一）
    english = plain(render("collection_opens", _notice("shangluo"), "en"))
    assert "December 20, 2023〔4〕" in english and "¥380〔1(3)〕" in english


def test_shangluo_deadline_counts_down_and_names_the_gap() -> None:
    notice = _notice("shangluo")
    text = plain(render("deadline", notice, "zh_Hans", today=dt.date(2023, 12, 13)))
    assert "还有 7 天截止" in text and "截止日期：2023年12月20日" in text
    # 四（一）: "未在集中缴费期或补缴期参保缴费的，不得享受参保年度的居民医保待遇": 12-21 … 12-31
    # is in neither, so paying then gives no 2024 cover; 四: an extension is the tax office's.
    assert "在这几天缴费不能享受2024年度待遇" in text and "可咨询：税务部门" in text
    tomorrow = plain(render("deadline", notice, "zh_Hans", today=dt.date(2023, 12, 19)))
    assert "明天截止" in tomorrow
    later = plain(render("deadline", notice, "zh_Hans", today=dt.date(2024, 6, 20)))
    assert "补缴期还有 10 天截止" in later and "2024年6月30日" in later


def test_shangluo_late_payment_and_newborn() -> None:
    notice = _notice("shangluo")
    late = plain(render("late_payment", notice, "zh_Hans"))
    # 四: "补缴时间为2024年1月1日至2024年6月30日"; 四（二）4（2）: no category subsidy.
    assert "补缴期：2024年1月1日 至 2024年6月30日" in late
    assert "不享受分类参保资助〔四（二）4（2）〕" in late
    assert "待遇从缴费次月1日起" in late
    newborn = plain(render("newborn", notice, "zh_Hans"))
    # 四（二）2: "新生儿出生90天内由监护人…办理参保登记".
    assert "出生后 90 天内" in newborn and "〔四（二）2〕" in newborn
    assert "享受出生当年医保待遇" in newborn  # 四（二）2（2）: the choice near 31 Dec


def test_shangluo_subsidy_groups() -> None:
    text = plain(render("subsidy_groups", _notice("shangluo"), "zh_Hans"))
    # 二（二）: "低保对象按190元/人定额资助"; 二（三）: "省级财政45元、市财政29元、县区财政116元".
    assert "每人资助 190元，由医疗救助基金承担〔二（二）〕" in text
    assert "省级财政 45元、市财政 29元、县区财政 116元" in text
    # 二（四）: the amount for 独生子女 is in another document: say so and name who to ask.
    assert "通知未写明资助金额" in text and "可咨询：卫健部门" in text


def test_fengshan_tiers_and_annex_subsidies() -> None:
    notice = _notice("fengshan")
    text = plain(render("collection_opens", notice, "zh_Hans"))
    # 二（二）: "1.一档：350元/人·年", "2.二档：725元/人·年"; 三（一）: "即日起至12月31日".
    assert "一档：350元" in text and "二档：725元" in text
    assert "即日起 至 2022年12月31日" in text
    subsidy = plain(render("subsidy_groups", notice, "zh_Hans"))
    # 附件2: "低保对象 315 350 2023年12月31日", "在乡老复员军人 350 725 2023年6月30日".
    assert "一档 315元，二档 350元" in subsidy and "一档 350元，二档 725元" in subsidy
    assert "享受资助须在 2023年6月30日 前缴费〔附件2〕" in subsidy
    late = plain(render("late_payment", notice, "zh_Hans"))
    # 三（一）: after 6-30 the fee is "个人缴费+财政补助标准", a figure the notice lacks.
    assert "个人缴费：通知未载明" in late and "可咨询：凤山街道社保所" in late
    assert "2023年9月30日" in late


def test_dalate_pay_first_reimbursed_later() -> None:
    text = plain(render("subsidy_groups", _notice("dalate"), "zh_Hans"))
    # 三（二）: "实行“先缴后补”缴费模式…按每人330元标准进行集中补助"; 二（一）: 380元.
    assert "先缴后补：缴费时按标准全额缴纳 380元" in text and "每人补助 330元〔三（二）〕" in text
    assert "按一种身份（就高）" in text and "〔三（五）〕" in text
    english = plain(render("subsidy_groups", _notice("dalate"), "en"))
    assert "(先缴后补)" in english and "¥330" in english
    late = plain(render("late_payment", _notice("dalate"), "zh_Hans"))
    assert "设 3 个月待遇等待期" in late  # 二（三）
    assert "通知没有明确写出截止日期" in late and "可咨询：旗医疗保障局" in late


def test_wulateqianqi_menu_paths_and_silent_deadline() -> None:
    text = plain(render("collection_opens", _notice("wulateqianqi"), "zh_Hans"))
    # 五（一）: "通过“我－支付－城市服务－社保－内蒙古社保缴费”路径"; 五（二）: 支付宝 path.
    assert "微信城市服务（我－支付－城市服务－社保－内蒙古社保缴费）〔五（一）〕" in text
    assert "市民中心－社保－内蒙古社保缴费" in text
    assert "400元〔二（一）〕" in text
    # 三 gives only the start of collection: the end is our reading, said so, office named.
    assert "通知没有明确写出截止日期" in text and "可咨询：旗税务局" in text


def test_tonghe_newborn_pays_both_years() -> None:
    text = plain(render("newborn", _notice("tonghe"), "zh_Hans"))
    # 三: "同时缴纳当年及下一年度医保费730元"; "只缴纳当年医保费380元".
    assert "730元" in text and "380元" in text
    subsidy = plain(render("subsidy_groups", _notice("tonghe"), "zh_Hans"))
    assert "60%" in subsidy and "228元" in subsidy  # 三: "给予60%的定额资助" of 380


def test_reminder_dates() -> None:
    shangluo = reminder_dates(_notice("shangluo"))
    concentrated = [r for r in shangluo if r.window == "concentrated"]
    assert [r.on for r in concentrated] == [dt.date(2023, 12, 13), dt.date(2023, 12, 19)]
    assert {r.end for r in concentrated} == {dt.date(2023, 12, 20)}
    assert [r.days for r in concentrated] == [7, 1]
    # 补缴期 ends 2024-06-30 (四); the 12-21…12-31 gap and after 6-30 are not payment windows.
    assert [r.on for r in shangluo if r.window == "makeup"] == [
        dt.date(2024, 6, 23),
        dt.date(2024, 6, 29),
    ]
    assert len(shangluo) == 4
    assert reminder_dates(_notice("wulateqianqi")) == []  # no stated end
    # 达拉特旗 二（二）: "2022年9月1日至2023年2月28日为集中参保期"; the later window has no end.
    assert [r.on for r in reminder_dates(_notice("dalate"))] == [
        dt.date(2023, 2, 21),
        dt.date(2023, 2, 27),
    ]
    for notice in default_library().regions():
        for r in reminder_dates(notice):
            text = render("deadline", notice, "zh_Hans", today=r.on)
            assert f"{r.end.year}年{r.end.month}月{r.end.day}日" in text


# -- the staff CLI -------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_TOKEN", "WEBHOOK_URL")}
    return subprocess.run(
        [sys.executable, "-m", "bot", "broadcast", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_dry_run_prints_every_language() -> None:
    proc = _cli("--template", "collection_opens", "--region", "wulateqianqi", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for locale in LOCALES:
        assert f"===== {locale}" in out
    assert "我－支付－城市服务－社保－内蒙古社保缴费" in out
    assert "<b>" not in out and "〔五（一）〕" in out and "〔5(1)〕" in out
    assert "乌拉特前旗" in out and "烏拉特前旗" in out and "Urad" in out


def test_cli_deadline_with_date() -> None:
    proc = _cli(
        "--template", "deadline", "--region", "shangluo", "--dry-run", "--date", "2023-12-13"
    )
    assert proc.returncode == 0, proc.stderr
    assert "还有 7 天截止" in proc.stdout and "ends in 7 days" in proc.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--template", "nope", "--region", "shangluo", "--dry-run"], "collection_opens"),
        (["--template", "deadline", "--region", "beijing", "--dry-run"], "shangluo"),
        (["--template", "late_payment", "--region", "tonghe", "--dry-run"], "可用的模板"),
        (["--template", "deadline", "--region", "shangluo"], "--staff-id"),
        (["--template", "deadline", "--region", "shangluo", "--dry-run", "--days", "x"], "--days"),
        (["--region", "shangluo", "--dry-run"], "--template"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args: list[str], says: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr

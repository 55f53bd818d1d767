"""The CLI contract of ``python -m policies`` (README): JSON shapes, text output, exit codes."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
import yaml
from notice_dirs import DATA_DIR

from policies.cli import main
from policies.loader import NOTICES_DIR, notice_files


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def quote_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    code, out, err = run(capsys, "quote", *argv, "--json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def test_regions_json_lists_every_loaded_notice(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "regions", "--json")
    assert code == 0
    listed = json.loads(out)
    assert len(listed) == len(notice_files(NOTICES_DIR))  # one row per data file
    rows = {r["id"]: (r["name"], r["benefit_year"]) for r in listed}
    assert (
        rows.items()
        >= {  # the shipped notices, read off their texts
            "dalate": ("达拉特旗", 2023),
            "tonghe": ("通河县", 2023),
            "wulateqianqi": ("乌拉特前旗", 2024),
            "fengshan": ("凤山街道", 2023),
            "shangluo": ("商洛市", 2024),
        }.items()
    )


def test_lint_takes_a_notice_directory_and_reports_faq_and_english(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "lint", str(DATA_DIR / "example-2027"))
    assert code == 0
    assert (
        "yangli-2027.yaml: no FAQ entries: questions are answered from the notice's clauses" in out
    )
    assert "样例县" in out.split("words without English")[1]  # no English for it yet
    code, out, _ = run(capsys, "lint")
    entries = yaml.safe_load((NOTICES_DIR / "fengshan-2023.faq.yaml").read_text("utf-8"))
    assert f"fengshan-2023.yaml: {len(entries)} FAQ entries" in out
    assert out.endswith("all notices pass\n")


def test_categories_use_the_notice_words(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "categories", "--region", "fengshan", "--json")
    assert code == 0
    names = {r["id"]: r["name"] for r in json.loads(out)}
    assert names["dibao_bianyuan"] == "低保边缘户"
    assert names["youfu"] == "在乡重点优抚对象（不含1—6级残疾军人）"
    assert len(names) == 18


def test_shangluo_ordinary_adult(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(
        capsys, "--region", "shangluo", "--birth-date", "1980-01-01", "--date", "2023-11-05"
    )
    assert (q["region"], q["benefit_year"], q["eligible"]) == ("shangluo", 2024, True)
    assert (q["fee"], q["subsidy"], q["pay_now"], q["net_cost"]) == (380, 0, 380, 380)
    assert (q["benefit_start"], q["benefit_end"]) == ("2024-01-01", "2024-12-31")
    assert q["channels"] == []  # the notice names none: a note says where to find them
    assert any("税务部门公开的缴费渠道" in n for n in q["notes"])
    assert {"file", "clause", "quote"} <= set(q["citations"][0])


def test_fengshan_low_income_margin_tier_one(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(
        capsys,
        "--region",
        "fengshan",
        "--birth-date",
        "1970-06-01",
        "--date",
        "2022-12-10",
        "--category",
        "dibao_bianyuan",
        "--tier",
        "1",
    )
    assert (q["fee"], q["subsidy"], q["pay_now"]) == (350, 245, 105)
    assert any(c["clause"] == "附件2" for c in q["citations"])


def test_tonghe_newborn_registered_within_90_days(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(
        capsys, "--region", "tonghe", "--birth-date", "2023-02-01", "--date", "2023-03-01"
    )
    assert (q["fee"], q["pay_now"], q["benefit_start"], q["benefit_end"]) == (
        380,
        380,
        "2023-02-01",
        "2023-12-31",
    )


def test_dalate_pay_first_reimbursed_later(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(
        capsys,
        "--region",
        "dalate",
        "--birth-date",
        "1970-01-01",
        "--date",
        "2022-10-10",
        "--category",
        "dibao",
    )
    assert (q["fee"], q["subsidy"], q["pay_now"], q["net_cost"]) == (380, 330, 380, 50)
    assert q["subsidy_mode"] == "reimbursed"


def test_date_no_notice_covers_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    q = quote_json(
        capsys, "--region", "shangluo", "--birth-date", "1980-01-01", "--date", "2026-11-22"
    )
    assert q["eligible"] is False and q["fee"] is None and q["benefit_start"] is None
    assert "2024年度" in q["notes"][0]


def test_text_output_is_readable_chinese(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "quote",
        "--region",
        "wulateqianqi",
        "--birth-date",
        "1980-01-01",
        "--date",
        "2023-10-01",
        "--category",
        "dibao_only",
    )
    assert code == 0
    assert "个人缴费标准：400元" in out and "参保资助：200元" in out
    assert "我－支付－城市服务－社保－内蒙古社保缴费" in out
    assert "2024-01-01 至 2024-12-31" in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--region", "atlantis"], "可选：dalate"),
        (["--region", "dalate", "--category", "no_such"], "可选："),
        (["--region", "dalate", "--category", "kunjing"], "没有身份类别 kunjing"),
        (["--region", "dalate", "--date-override"], "unrecognized"),
        (["--region", "fengshan"], "请指定档次：1、2"),
        (["--region", "fengshan", "--tier", "3"], "没有第 3 档"),
        (["--region", "dalate", "--tier", "1"], "不分档次"),
        (["--region", "dalate", "--birth-date", "2023-02-30"], "不是有效日期"),
        (["--region", "dalate", "--birth-date", "2023/1/5"], "YYYY-MM-DD"),
        (["--region", "dalate", "--birth-date", "2022-12-01"], "晚于缴费日期"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    base = {"--birth-date": "1980-01-01", "--date": "2022-11-01"}
    for flag, value in itertools.pairwise(argv):
        if flag in base:
            base[flag] = value
    rest = [a for i, a in enumerate(argv) if a not in base and (i == 0 or argv[i - 1] not in base)]
    code, out, err = run(capsys, "quote", *rest, *[x for kv in base.items() for x in kv])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and says in err
    assert "Traceback" not in err


def test_module_entry_point_runs() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "policies",
            "quote",
            "--region",
            "nowhere",
            "--birth-date",
            "x",
            "--date",
            "2023-01-01",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        proc.returncode == 2 and proc.stderr.startswith("错误：") and "Traceback" not in proc.stderr
    )


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--birth-date", "1980-W45-7", "YYYY-MM-DD"),
        ("--date", "2022-W45-7", "YYYY-MM-DD"),
        ("--date", "2022-1105", "YYYY-MM-DD"),
        ("--birth-date", "0001-01-01", "1900-01-01"),
        ("--birth-date", "1899-12-31", "1900-01-01"),
    ],
)
def test_only_named_date_formats_and_the_bots_birth_range(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    """Issue 13, "the CLI accepts ISO week dates and birth years like 0001": only
    YYYY-MM-DD (what --help names) and births from 1900-01-01, as in the bot."""
    given = {"--birth-date": "1980-01-01", "--date": "2022-11-01", flag: value}
    argv = [x for kv in given.items() for x in kv]
    code, out, err = run(capsys, "quote", "--region", "dalate", *argv)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and says in err


def test_undecided_is_null_not_false(capsys: pytest.CaptureFixture[str]) -> None:
    # 通河县 三: only newborns are provided for after 2022-12-31; adults are not named.
    q = quote_json(
        capsys, "--region", "tonghe", "--birth-date", "1970-01-01", "--date", "2023-03-03"
    )
    assert q["eligible"] is None and q["determined"] is False
    assert q["office"] == "县医疗保障局" and q["pay_now"] is None
    code, out, _ = run(
        capsys, "quote", "--region", "tonghe", "--birth-date", "1970-01-01", "--date", "2023-03-03"
    )
    assert code == 0 and "通知没有写明能否参保缴费，请向县医疗保障局咨询" in out
    assert "不能参保" not in out


def test_quote_from_a_notice_directory_with_history(capsys: pytest.CaptureFixture[str]) -> None:
    data = quote_json(
        capsys,
        *("--notices", str(DATA_DIR / "example-2027"), "--region", "yangli"),
        *("--birth-date", "1980-05-01", "--date", "2026-11-20"),
        *("--years-without-cover", "2", "--continuous-years", "6", "--claim-free-years", "1"),
    )
    # 一（二）: 420 for 18-59; 四（一）（二）: 3 + 2 months from 1 January 2027; 五（二）（三）
    # （四）: 300000 + 2 × 10000 + 5000.
    assert (data["age_group"], data["fee"], data["waiting_months"]) == ("劳动年龄内居民", 420, 5)
    assert data["benefit_start"] == "2027-06-01"
    caps = {b["id"]: b["cap"] for b in data["benefits"]}
    assert caps == {"outpatient": 400, "critical_illness": 325000}
    code, out, _ = run(
        capsys,
        *("quote", "--notices", str(DATA_DIR / "example-2027"), "--region", "yangli"),
        *("--birth-date", "1980-05-01", "--date", "2026-11-20"),
    )
    assert code == 0 and "劳动年龄内居民" in out and "待遇水平：大病保险" in out

"""Lint must pass on the shipped notices and fail on each kind of mistake it claims to catch."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from notice_dirs import DATA_DIR, data_notice_dirs

from policies.lint import clause_spans, lint_all
from policies.loader import NOTICES_DIR

Mutation = Callable[[dict], None]  # type: ignore[type-arg]


def test_shipped_notices_pass() -> None:
    assert lint_all() == []


def _copy(tmp_path: Path, notice_id: str) -> Path:
    shutil.copytree(NOTICES_DIR / "texts", tmp_path / "texts")
    target = tmp_path / f"{notice_id}.yaml"
    shutil.copy(NOTICES_DIR / f"{notice_id}.yaml", target)
    return target


def _lint_mutated(tmp_path: Path, notice_id: str, mutate: Mutation) -> list[str]:
    path = _copy(tmp_path, notice_id)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    mutate(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return [str(p) for p in lint_all(tmp_path)]


def _set_fee_quote(d: dict) -> None:  # type: ignore[type-arg]
    d["fee"]["cite"]["quote"] = "个人缴费标准为390元/人"


def _move_fee_clause(d: dict) -> None:  # type: ignore[type-arg]
    d["fee"]["cite"]["clause"] = "三（一）"


def _overlap(d: dict) -> None:  # type: ignore[type-arg]
    d["windows"][1]["start"] = "2023-02-01"


def _gap(d: dict) -> None:  # type: ignore[type-arg]
    d["windows"][1]["start"] = "2023-03-05"


def _undefined_category(d: dict) -> None:  # type: ignore[type-arg]
    d["windows"][1]["rules"][1]["when"]["categories"].append("no_such_group")


def _undefined_office(d: dict) -> None:  # type: ignore[type-arg]
    d["windows"][1]["notes"][0]["ask"] = "no_such_office"


def _unknown_key(d: dict) -> None:  # type: ignore[type-arg]
    d["fee"]["currency"] = "CNY"


def _wrong_type(d: dict) -> None:  # type: ignore[type-arg]
    d["fee"]["amount"] = "三百八"


def _missing_citation(d: dict) -> None:  # type: ignore[type-arg]
    del d["categories"][0]["cite"]


def _payers_do_not_add_up(d: dict) -> None:  # type: ignore[type-arg]
    d["categories"][3]["subsidy"]["payers"] = [{"name": "旗民政局", "amount": 300}]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set_fee_quote, "quote not in"),
        (_move_fee_clause, "is not inside clause"),
        (_overlap, "overlaps"),
        (_gap, "gap between"),
        (_undefined_category, "referenced but not defined"),
        (_undefined_office, "referenced but not defined"),
        (_unknown_key, "Extra inputs are not permitted"),
        (_wrong_type, "valid integer"),
        (_missing_citation, "Field required"),
        (_payers_do_not_add_up, "do not add up"),
    ],
)
def test_lint_catches(tmp_path: Path, mutate: Mutation, expected: str) -> None:
    problems = _lint_mutated(tmp_path, "dalate-2023", mutate)
    assert any(expected in p for p in problems), problems


def test_two_notices_of_one_region_may_not_overlap(tmp_path: Path) -> None:
    path = _copy(tmp_path, "dalate-2023")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["id"] = "dalate-2024"
    data["benefit_year"] = 2024
    (tmp_path / "dalate-2024.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    assert any("overlaps the windows of" in str(p) for p in lint_all(tmp_path))


def test_clause_locator_reads_nested_clauses() -> None:
    text = (NOTICES_DIR / "texts" / "004_2e7c0db1526c3ad3.txt").read_text(encoding="utf-8")
    ((lo, hi),) = clause_spans(text, "四（二）2（2）")
    assert text[lo:hi].lstrip().startswith("（2）新生儿出生日期距离当年12月31日不足90天")
    assert "（3）" not in text[lo:hi]
    annex = (NOTICES_DIR / "texts" / "003_b58880bcec2f7fe6.txt").read_text(encoding="utf-8")
    ((lo, hi),) = clause_spans(annex, "附件2")
    assert "计划生育手术并发症对象" in annex[lo:hi] and "巷口社区" not in annex[lo:hi]


@pytest.mark.parametrize("directory", data_notice_dirs(), ids=lambda d: d.name)
def test_notice_directories_under_tests_data_pass(directory: Path) -> None:
    assert lint_all(directory) == []


def _lint_example(tmp_path: Path, mutate: Mutation) -> list[str]:
    source = DATA_DIR / "example-2027"
    shutil.copy(source / "notice.txt", tmp_path / "notice.txt")
    data = yaml.safe_load((source / "yangli-2027.yaml").read_text(encoding="utf-8"))
    mutate(data)
    target = tmp_path / "yangli-2027.yaml"
    target.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return [str(p) for p in lint_all(tmp_path)]


def _age_gap(d: dict) -> None:  # type: ignore[type-arg]
    d["age_groups"]["groups"][1]["from_age"] = 19


def _age_open_end(d: dict) -> None:  # type: ignore[type-arg]
    d["age_groups"]["groups"][2]["below_age"] = 100


def _age_unknown_category(d: dict) -> None:  # type: ignore[type-arg]
    d["age_groups"]["groups"][0]["categories"] = ["no_such_group"]


def _percent_of_group_fee(d: dict) -> None:  # type: ignore[type-arg]
    d["categories"][3]["subsidy"]["percent"] = 33  # 33 % of 400, 420, 360: not whole yuan


def _raise_quote(d: dict) -> None:  # type: ignore[type-arg]
    d["benefits"][1]["raises"][0]["cite"]["quote"] = "每多连续参保1年提高2万元"


def _waiting_extra_uncited(d: dict) -> None:  # type: ignore[type-arg]
    del d["windows"][1]["rules"][2]["waiting"]["extra_cite"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_age_gap, "starts at 19, not 18"),
        (_age_open_end, "no group takes ages from 100 up"),
        (_age_unknown_category, "'no_such_group' is referenced but not defined"),
        (_percent_of_group_fee, "not give whole yuan"),
        (_raise_quote, "quote not in notice.txt"),
        (_waiting_extra_uncited, "need their citation (extra_cite)"),
    ],
)
def test_lint_catches_new_rule_kind_mistakes(
    tmp_path: Path, mutate: Mutation, expected: str
) -> None:
    problems = _lint_example(tmp_path, mutate)
    assert any(expected in p for p in problems), problems

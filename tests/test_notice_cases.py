"""Runs every case file beside the notices (policies/notices/*.cases.yaml).

The expected values in those files were read off the notices' text (see CASES.md), not
taken from the engine.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.engine import quote
from policies.loader import NOTICES_DIR, default_library, notice_files
from policies.quote import Applicant, ApplicantError, Quote

MIN_CASES_PER_NOTICE = 15


def _case_files() -> list[Path]:
    return [p.with_name(p.stem + ".cases.yaml") for p in notice_files(NOTICES_DIR)]


def _cases() -> list[Any]:
    params = []
    for path in _case_files():
        region = path.name.split("-")[0]
        for i, case in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))):
            params.append(pytest.param(region, case, id=f"{path.stem}[{i}] {case['name']}"))
    return params


@pytest.mark.parametrize("path", _case_files(), ids=lambda p: p.name)
def test_every_notice_has_enough_cases(path: Path) -> None:
    cases = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert len(cases) >= MIN_CASES_PER_NOTICE
    assert all(c.get("reference") or c.get("error") for c in cases)


def _observed(q: Quote, key: str) -> Any:
    if key == "payers":
        return {p.name: p.amount for p in q.payers}
    if key == "alternatives":
        return [
            {
                "covers": a.covers,
                "fee": a.fee,
                "benefit_start": a.benefit_start,
                "benefit_end": a.benefit_end,
            }
            for a in q.alternatives
        ]
    return getattr(q, key)


def _check(q: Quote, expect: dict[str, Any]) -> list[str]:
    wrong = []
    for key, want in expect.items():
        if key == "mentions":
            said = " ".join(
                [n.text for n in q.notes]
                + [c.quote for c in q.citations]
                + [s.text for s in q.trace]
            )
            wrong += [f"mentions {m!r}" for m in want if m not in said]
        elif key == "payers":
            got = _observed(q, key)
            for name, amount in want.items():
                match = [a for n, a in got.items() if name in n]
                if not match or (amount is not None and match[0] != amount):
                    wrong.append(f"payers: want {name}={amount}, got {got}")
        elif key == "alternatives":
            got = _observed(q, key)
            if len(got) != len(want) or any(
                any(g[k] != v for k, v in w.items()) for g, w in zip(got, want, strict=False)
            ):
                wrong.append(f"alternatives: want {want}, got {got}")
        else:
            got = _observed(q, key)
            if got != want:
                wrong.append(f"{key}: want {want!r}, got {got!r}")
    return wrong


@pytest.mark.parametrize(("region", "case"), _cases())
def test_case(region: str, case: dict[str, Any]) -> None:
    given = case["input"]
    applicant = Applicant(
        region=given.get("region", region),
        birth_date=given["birth_date"],
        payment_date=given["date"],
        categories=frozenset(given.get("categories") or ()),
        tier=given.get("tier"),
    )
    assert isinstance(applicant.birth_date, dt.date)
    if "error" in case:
        with pytest.raises(ApplicantError) as err:
            quote(default_library(), applicant)
        assert err.value.kind == case["error"]
        return
    q = quote(default_library(), applicant)
    wrong = _check(q, case["expect"])
    assert not wrong, "\n".join(wrong)

"""Runs every case file: beside the shipped notices (policies/notices/*.cases.yaml) and in
every notice directory under tests/data/ (its cases.yaml), so a new notice is data only.

The expected values in those files were read off the notices' text (see CASES.md), not
taken from the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from notice_dirs import applicant, case_files, library, load_cases, notice_for

from policies.engine import quote
from policies.faq import FaqIndex
from policies.quote import ApplicantError, Quote

MIN_CASES_PER_NOTICE = 15


def _cases() -> list[Any]:
    params = []
    for directory, path in case_files():
        for i, case in enumerate(load_cases(path)):
            label = f"{path.parent.name}/{path.name}[{i}] {case['name']}"
            params.append(pytest.param(directory, path, case, id=label))
    return params


@pytest.mark.parametrize(("directory", "path"), case_files(), ids=lambda p: str(p))
def test_every_notice_has_enough_cases(directory: Path, path: Path) -> None:
    cases = load_cases(path)
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
    for b in q.benefits:  # <benefit id>_deductible, <benefit id>_cap
        if key == f"{b.id}_deductible":
            return b.deductible
        if key == f"{b.id}_cap":
            return b.cap
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
        elif key != "silent":
            got = _observed(q, key)
            if got != want:
                wrong.append(f"{key}: want {want!r}, got {got!r}")
    return wrong


def _silent(directory: Path, region: str, case: dict[str, Any]) -> list[str]:
    """The notice does not answer the question: the FAQ says so, or answers from a clause
    the case names (where the notice defers: 另行通知, 按现行规定执行), by an FAQ entry
    citing it or by the clause itself."""
    answer = FaqIndex(library(directory), directory).search(case["input"]["question"], region)[0]
    clauses = str(case.get("reference", "")).split("；")
    if answer.kind == "none" or answer.clause in clauses:
        return []
    return [f"silent: the FAQ answers {answer.kind} {answer.clause}: {answer.message.zh()}"]


@pytest.mark.parametrize(("directory", "path", "case"), _cases())
def test_case(directory: Path, path: Path, case: dict[str, Any]) -> None:
    notice = notice_for(directory, path)
    person = applicant(notice, case["input"])
    if "error" in case:
        with pytest.raises(ApplicantError) as err:
            quote(library(directory), person)
        assert err.value.kind == case["error"]
        return
    q = quote(library(directory), person)
    wrong = _check(q, case["expect"])
    if case["expect"].get("silent"):
        wrong += _silent(directory, notice.region.id, case)
    assert not wrong, "\n".join(wrong)

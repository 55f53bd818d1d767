"""Where the tests find notices: the shipped ones and every notice directory under
``tests/data/`` (a directory holding a ``<region>-<year>.yaml`` data file), so adding a
test notice is data only.

Case files may name groups by the notice's words (``groups: [低保对象]``) or by id
(``categories: [dibao]``).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from policies.loader import NOTICES_DIR, Library, cases_path, load_library, notice_files
from policies.models import Notice
from policies.quote import Applicant

DATA_DIR = Path(__file__).parent / "data"


def data_notice_dirs() -> list[Path]:
    """Notice directories under tests/data/ that have a data file (not yet: not run)."""
    return sorted(d for d in DATA_DIR.iterdir() if d.is_dir() and notice_files(d))


def notice_dirs() -> list[Path]:
    return [NOTICES_DIR, *data_notice_dirs()]


@cache
def library(directory: Path) -> Library:
    return load_library(directory)


def case_files() -> list[tuple[Path, Path]]:
    """(notice directory, case file) for every notice data file that has cases."""
    found = []
    for directory in notice_dirs():
        for path in notice_files(directory):
            cases = cases_path(path)
            if cases.exists():
                found.append((directory, cases))
    return found


def load_cases(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or []


def notice_for(directory: Path, cases: Path) -> Notice:
    lib = library(directory)
    stem = cases.name.removesuffix(".cases.yaml")
    if cases.name == "cases.yaml":  # a notice directory's cases.yaml: its only notice
        (notice,) = lib.notices
        return notice
    return next(n for n in lib.notices if n.id == stem)


def category_ids(notice: Notice, given: dict[str, Any]) -> frozenset[str]:
    """Category ids from ``categories`` (ids) and ``groups`` (the notice's names or aliases)."""
    ids = set(given.get("categories") or ())
    for word in given.get("groups") or ():
        match = [c.id for c in notice.categories if word == c.name or word in c.aliases]
        if not match:
            names = "、".join(c.name for c in notice.categories)
            raise AssertionError(f"{notice.id} has no group {word!r}; it has {names}")
        ids.add(match[0])
    return frozenset(ids)


def applicant(notice: Notice, given: dict[str, Any]) -> Applicant:
    birth = given["birth_date"]
    assert isinstance(birth, dt.date), birth
    return Applicant(
        region=given.get("region", notice.region.id),
        birth_date=birth,
        payment_date=given["date"],
        categories=category_ids(notice, given),
        tier=given.get("tier"),
        years_without_cover=given.get("years_without_cover"),
        continuous_years=given.get("continuous_years"),
        claim_free_years=given.get("claim_free_years"),
    )

"""Loading notice data files: the only I/O the policy core does."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from policies.models import Notice

NOTICES_DIR = Path(__file__).parent / "notices"
TEXTS_DIR = NOTICES_DIR / "texts"


@dataclass(frozen=True)
class Library:
    """Every loaded notice, with the text each one cites."""

    notices: tuple[Notice, ...]
    texts: dict[str, str]
    by_region: dict[str, tuple[Notice, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, list[Notice]] = {}
        for notice in self.notices:
            index.setdefault(notice.region.id, []).append(notice)
        for group in index.values():
            group.sort(key=lambda n: n.benefit_year)
        object.__setattr__(self, "by_region", {k: tuple(v) for k, v in index.items()})

    def for_region(self, region_id: str) -> tuple[Notice, ...]:
        return self.by_region.get(region_id, ())

    def latest(self, region_id: str) -> Notice | None:
        """The region's notice for its latest benefit year; None for an unknown region."""
        notices = self.by_region.get(region_id)
        return notices[-1] if notices else None

    def region_in(self, text: str) -> str | None:
        """The region a text names (the longest alias found wins), or None."""
        text = text.strip()
        best: tuple[int, str] | None = None
        for notice in self.regions():
            for alias in (notice.region.name, *notice.region.aliases):
                hit = alias in text or text.lower() == alias.lower()
                if hit and (best is None or len(alias) > best[0]):
                    best = (len(alias), notice.region.id)
        return best[1] if best else None

    def regions(self) -> list[Notice]:
        """One notice per region (the latest benefit year), in file order."""
        latest: dict[str, Notice] = {}
        for notice in self.notices:
            current = latest.get(notice.region.id)
            if current is None or notice.benefit_year > current.benefit_year:
                latest[notice.region.id] = notice
        return list(latest.values())


def notice_files(directory: Path = NOTICES_DIR) -> list[Path]:
    """``<region>-<year>.yaml``; the cases and FAQ files beside them have a second suffix."""
    return sorted(p for p in directory.glob("*.yaml") if "." not in p.stem)


def load_notice(path: Path) -> Notice:
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    notice = Notice.model_validate(raw)
    if notice.id != path.stem:
        raise ValueError(f"{path.name}: id {notice.id!r} must match the file name")
    return notice


def load_library(directory: Path = NOTICES_DIR) -> Library:
    notices = tuple(load_notice(p) for p in notice_files(directory))
    texts = {}
    for notice in notices:
        text_path = directory / "texts" / notice.document.file
        texts[notice.document.file] = text_path.read_text(encoding="utf-8")
    return Library(notices=notices, texts=texts)


@cache
def default_library() -> Library:
    return load_library()

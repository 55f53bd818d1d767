"""Loading notice data files: the only I/O the policy core does."""

from __future__ import annotations

import datetime as dt
import re
import string
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

import yaml
from rapidfuzz.distance import OSA, Levenshtein

from policies.models import Category, Notice
from policies.normalize import normalize

NOTICES_DIR = Path(__file__).parent / "notices"
# libyaml's parser where PyYAML was built with it: the same safe loading, ~10× faster start.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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

    def categories(self, region_id: str) -> list[Category]:
        """The region's categories over all its notices, each id once (earliest year's)."""
        seen: dict[str, Category] = {}
        for notice in self.for_region(region_id):
            for cat in notice.categories:
                seen.setdefault(cat.id, cat)
        return list(seen.values())

    def latest(self, region_id: str) -> Notice | None:
        """The region's notice for its latest benefit year; None for an unknown region."""
        notices = self.by_region.get(region_id)
        return notices[-1] if notices else None

    def opening_days(self, region: str | None = None) -> list[dt.date | None]:
        """The first payment day of every window (of the region's notices): its start, or
        for "即日起" the notice's issue date; None where the notice bears no date."""
        notices = self.for_region(region) if region else self.notices
        return [w.start or n.document.issued_on for n in notices for w in n.windows]

    def region_in(self, text: str) -> str | None:
        """The one region a text names, or None (none, or several that could fit)."""
        found = self.regions_in(text)
        return found[0] if len(found) == 1 else None

    def regions_in(self, text: str, near: bool = True) -> list[str]:
        """The regions a text names, best first: [] none, one sure, several to ask about.

        Names are the notice's region name, its aliases (pinyin and English included) and
        its places (towns, villages, the city around it), compared in normalised form, so
        Traditional characters and full-width letters match. The longest name found wins;
        names of the same length in several regions are all returned. With ``near`` and no
        name found, a region name or alias one edit away counts ("商落", "通和县").
        """
        text = normalize(text)
        hits: dict[str, int] = {}
        names = self._names
        for i in sorted({i for c in set(text) for i in self._names_by_first.get(c, ())}):
            name, region, _ = names[i]
            if _contains(text, name):
                hits[region] = max(hits.get(region, 0), len(name))
        if hits:
            best = max(hits.values())
            return [r for r, n in hits.items() if n == best]
        if not near:
            return []
        near_hits: dict[str, int] = {}
        for i in self._aliases_sharing(text):
            name, region, _ = names[i]
            if _near(text, name):
                near_hits[region] = max(near_hits.get(region, 0), len(name))
        if not near_hits:
            return []
        best = max(near_hits.values())
        return [r for r, n in near_hits.items() if n == best]

    def region_guesses(self, text: str) -> list[str]:
        """Regions a two-character name with one character changed may mean, anywhere in the
        text ("商落低保户交多少"): too weak to take ("商量" is one change from 商洛), so the
        caller asks "您是说商洛市吗？". Only for texts ``regions_in`` finds nothing in."""
        text = normalize(text)
        found: list[str] = []
        for i in self._aliases_sharing(text):
            name, region, _ = self._names[i]
            two = len(name) == 2 and not name.isascii()
            if two and region not in found and _near(text, name, anywhere=True):
                found.append(region)
        return found

    def _aliases_sharing(self, text: str) -> list[int]:
        """Where in ``_names`` the aliases are that a typo in ``text`` could stand for: a
        Chinese one with a character in the text (one edit leaves all but one), a Latin one
        when the text has Latin letters."""
        chars = set(text)
        if not chars.isdisjoint(string.ascii_lowercase):
            chars.add("a-z")
        return sorted({i for c in chars for i in self._aliases_by_char.get(c, ())})

    @cached_property
    def _names(self) -> list[tuple[str, str, bool]]:
        """(normalised name, region id, whether a typo of it counts), one region's notices
        after another."""
        names: list[tuple[str, str, bool]] = []
        for notice in self.regions():
            region = notice.region
            for alias in (region.name, *region.aliases):
                names.append((normalize(alias), region.id, True))
            for place in region.places:
                names += [(normalize(p), region.id, False) for p in place.names]
        return names

    @cached_property
    def _names_by_first(self) -> dict[str, list[int]]:
        """Where in ``_names`` the names starting with each character are: a text can only
        hold those of its own characters (a few of some 270 names, for a message)."""
        found: dict[str, list[int]] = {}
        for i, (name, _, _) in enumerate(self._names):
            found.setdefault(name[:1], []).append(i)
        return found

    @cached_property
    def _aliases_by_char(self) -> dict[str, list[int]]:
        """Where in ``_names`` the aliases (those whose typos count) holding each Chinese
        character are; the Latin ones under "a-z"."""
        found: dict[str, list[int]] = {}
        for i, (name, _, alias) in enumerate(self._names):
            if alias:
                for c in {"a-z"} if name.isascii() else set(name):
                    found.setdefault(c, []).append(i)
        return found

    def regions(self) -> list[Notice]:
        """One notice per region (the latest benefit year), in file order."""
        latest: dict[str, Notice] = {}
        for notice in self.notices:
            current = latest.get(notice.region.id)
            if current is None or notice.benefit_year > current.benefit_year:
                latest[notice.region.id] = notice
        return list(latest.values())


_SUFFIX = "市县区旗镇乡的人"  # what follows a short place name typed with a typo


def _contains(text: str, name: str) -> bool:
    if name.isascii():  # a Latin name is a word, not letters inside another word
        return _word_pattern(name).search(text) is not None
    return name in text


@cache
def _word_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z]){re.escape(name)}(?![a-z])")


def _near(text: str, name: str, anywhere: bool = False) -> bool:
    """``name`` with one character changed, added or dropped stands in ``text``.

    Two-character names (商洛, 通河) only change a character, and only where a place
    suffix follows or the message is the name alone, so "商量" is not 商洛.
    """
    if name.isascii():
        words = re.findall(r"[a-z]+(?: [a-z]+)*", text)
        spans = {w for phrase in words for w in (phrase, *phrase.split())}
        return len(name) >= 5 and any(
            OSA.distance(w, name, score_cutoff=1) <= 1
            for w in spans  # "shanglou" too
        )
    size = len(name)
    if size < 2:
        return False
    lengths = (size,) if size == 2 else (size - 1, size, size + 1)
    chars = set(name)
    if len(chars.intersection(text)) < size - 1:
        return False  # no window can pass the test below: most texts, found at once
    for length in lengths:
        for i in range(len(text) - length + 1):
            window = text[i : i + length]
            if len(chars.intersection(window)) < size - 1:
                continue
            if Levenshtein.distance(window, name, score_cutoff=1) > 1:
                continue
            after = text[i + length : i + length + 1]
            before = text[i - 1 : i] if i else ""
            ends = not after and before and before in "在是住到从去"  # "我们在商落"
            if anywhere or size > 2 or len(text.strip()) <= 3 or (after and after in _SUFFIX):
                return True
            if ends:
                return True
    return False


def notice_files(directory: Path = NOTICES_DIR) -> list[Path]:
    """``<region>-<year>.yaml``; the cases and FAQ files beside them have a second suffix
    (or, in a notice directory under ``tests/data/``, are named ``cases.yaml``)."""
    return sorted(
        p for p in directory.glob("*.yaml") if "." not in p.stem and p.name != "cases.yaml"
    )


def load_notice(path: Path) -> Notice:
    with path.open(encoding="utf-8") as fh:
        raw = yaml.load(fh, Loader=SAFE_LOADER)
    notice = Notice.model_validate(raw)
    if notice.id != path.stem:
        raise ValueError(f"{path.name}: id {notice.id!r} must match the file name")
    return notice


def text_path(directory: Path, notice: Notice) -> Path:
    """The notice's text: in ``texts/`` beside the data file, or beside it directly (a
    notice directory under ``tests/data/``)."""
    inside = directory / "texts" / notice.document.file
    return inside if inside.exists() else directory / notice.document.file


def cases_path(notice_file: Path) -> Path:
    """``<id>.cases.yaml`` beside the data file, or ``cases.yaml`` in a notice directory."""
    named = notice_file.with_name(notice_file.stem + ".cases.yaml")
    plain = notice_file.with_name("cases.yaml")
    return plain if not named.exists() and plain.exists() else named


def load_library(directory: Path = NOTICES_DIR) -> Library:
    notices = tuple(load_notice(p) for p in notice_files(directory))
    texts = {}
    for notice in notices:
        texts[notice.document.file] = text_path(directory, notice).read_text(encoding="utf-8")
    return Library(notices=notices, texts=texts)


@cache
def default_library() -> Library:
    return load_library()

"""Checks a notice data file against the text it cites.

Loading (pydantic) already rejects unknown keys, wrong types and missing citations. Lint
adds what needs the notice's text or the whole file: every quote occurs in its notice and
inside the clause it names; windows tile the calendar with no overlap or gap; every
category and office a rule names is defined; subsidy figures add up; age groups take
every age once; benefit caps per tier give every tier.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from policies.loader import NOTICES_DIR, load_notice, notice_files, text_path
from policies.models import Citation, Condition, Note, Notice

_WS = re.compile(r"\s+")
_CN_NUM = "一二三四五六七八九十"
# Heading families, outermost first. A clause such as 四（二）2（1） names one per level.
FAMILIES: tuple[tuple[str, str], ...] = (
    (rf"[{_CN_NUM}]+", rf"^\s*(?:附件\d+|[{_CN_NUM}]+、)"),
    (rf"（[{_CN_NUM}]+）", rf"^\s*（[{_CN_NUM}]+）"),
    (r"\d+", r"^\s*\d+[.．]"),
    (r"（\d+）", r"^\s*（\d+）"),
)
_CLAUSE_TOKEN = re.compile(rf"附件\d+|[{_CN_NUM}]+|（[{_CN_NUM}]+）|（\d+）|\d+|注")
# Clauses that name a part of the document rather than a numbered section.
_WHOLE_TEXT = {"标题", "文号", "前言", "落款", "正文"}


@dataclass(frozen=True)
class Problem:
    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}"


def squash(text: str) -> str:
    return _WS.sub("", text)


def _heading_pattern(token: str) -> tuple[int, re.Pattern[str]]:
    """The heading level of a clause token and a pattern for that very heading."""
    if token.startswith("附件"):
        return 0, re.compile(rf"^\s*{token}(?!\d)", re.M)
    if token == "注":
        return 4, re.compile(r"^\s*注[:：]", re.M)
    for level, (token_re, _) in enumerate(FAMILIES):
        if re.fullmatch(token_re, token):
            suffix = {0: "、", 2: r"[.．]"}.get(level, "")
            return level, re.compile(rf"^\s*{re.escape(token)}{suffix}", re.M)
    raise ValueError(f"cannot read clause part {token!r}")


def clause_spans(text: str, clause: str) -> list[tuple[int, int]]:
    """Every span of ``text`` the clause can denote (a heading may recur, e.g. in a preamble)."""
    if clause in _WHOLE_TEXT:
        return [(0, len(text))]
    tokens = _CLAUSE_TOKEN.findall(clause)
    if "".join(tokens) != clause:
        raise ValueError(f"cannot read clause {clause!r}")
    spans = [(0, len(text))]
    for token in tokens:
        level, pattern = _heading_pattern(token)
        stops = [re.compile(f[1], re.M) for f in FAMILIES[: min(level, 3) + 1]]
        found = []
        for lo, hi in spans:
            for m in pattern.finditer(text, lo, hi):
                end = hi
                for stop in stops:
                    nxt = stop.search(text, m.end(), hi)
                    if nxt is not None:
                        end = min(end, nxt.start())
                found.append((m.start(), end))
        spans = found
    return spans


def _walk(value: object, where: str) -> Iterator[tuple[str, object]]:
    yield where, value
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{where}.{name}" if where else name)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from _walk(item, f"{where}[{k}]")


def check_citations(model: BaseModel, text: str, file: str) -> Iterator[tuple[str, str]]:
    flat = squash(text)
    for where, value in _walk(model, ""):
        if not isinstance(value, Citation):
            continue
        quote = squash(value.quote)
        if quote not in flat:
            yield where, f"quote not in {file}: {value.quote!r}"
            continue
        try:
            spans = clause_spans(text, value.clause)
        except ValueError as exc:
            yield where, str(exc)
            continue
        if not spans:
            yield where, f"clause {value.clause!r} not found in {file}"
        elif not any(quote in squash(text[lo:hi]) for lo, hi in spans):
            yield where, f"quote {value.quote!r} is not inside clause {value.clause!r}"


def check_windows(notice: Notice) -> Iterator[tuple[str, str]]:
    windows = notice.windows
    for i, w in enumerate(windows):
        if i and w.start is None:
            yield f"windows[{i}]", "only the first window may start 即日起 (start: null)"
    for i, (prev, nxt) in enumerate(itertools.pairwise(windows), start=1):
        if nxt.start is None:
            continue
        if nxt.start <= prev.end:
            yield f"windows[{i}]", f"{nxt.id} overlaps {prev.id}"
        elif nxt.start != prev.end + dt.timedelta(days=1):
            yield f"windows[{i}]", f"gap between {prev.id} (to {prev.end}) and {nxt.id}"
    ids = [w.id for w in windows]
    if len(set(ids)) != len(ids):
        yield "windows", "window ids repeat"


def check_references(notice: Notice) -> Iterator[tuple[str, str]]:
    categories = {c.id for c in notice.categories}
    offices = {o.id for o in notice.offices}
    if len(categories) != len(notice.categories):
        yield "categories", "category ids repeat"
    if len(offices) != len(notice.offices):
        yield "offices", "office ids repeat"
    if notice.ask_office not in offices:
        yield "ask_office", f"office {notice.ask_office!r} is not defined"
    for where, value in _walk(notice, ""):
        if isinstance(value, Condition):
            for cid in value.categories or []:
                if cid not in categories:
                    yield where, f"category {cid!r} is referenced but not defined"
        elif isinstance(value, Note) and value.ask is not None and value.ask not in offices:
            yield where, f"office {value.ask!r} is referenced but not defined"
    for i, group in enumerate(notice.age_groups.groups if notice.age_groups else []):
        for cid in group.categories:
            if cid not in categories:
                yield f"age_groups.groups[{i}]", f"category {cid!r} is referenced but not defined"
    for i, cat in enumerate(notice.categories):
        if cat.confirmed_by is not None and cat.confirmed_by not in offices:
            yield f"categories[{i}]", f"office {cat.confirmed_by!r} is referenced but not defined"


def check_age_groups(notice: Notice) -> Iterator[tuple[str, str]]:
    """The groups take every age once: from 0, each from where the last stopped, open-ended."""
    if notice.age_groups is None:
        return
    groups = notice.age_groups.by_age
    expected = 0
    for i, group in enumerate(groups):
        if group.from_age != expected:
            yield (
                f"age_groups.groups[{i}]",
                f"{group.id} starts at {group.from_age}, not {expected}",
            )
        if group.below_age is None:
            if i != len(groups) - 1:
                yield f"age_groups.groups[{i}]", "only the last group may have no below_age"
            return
        expected = group.below_age
    yield "age_groups", f"no group takes ages from {expected} up (the last needs no below_age)"


def check_benefits(notice: Notice) -> Iterator[tuple[str, str]]:
    tiers = {t.id for t in notice.tiers or []}
    ids = [b.id for b in notice.benefits]
    if len(set(ids)) != len(ids):
        yield "benefits", "benefit ids repeat"
    for i, b in enumerate(notice.benefits):
        if b.cap_per_tier is not None and set(b.cap_per_tier) != tiers:
            yield f"benefits[{i}]", f"cap_per_tier must give exactly the tiers {sorted(tiers)}"
        kinds = [r.by for r in b.raises]
        if len(set(kinds)) != len(kinds):
            yield f"benefits[{i}]", "one raise per kind of years"


def check_subsidies(notice: Notice) -> Iterator[tuple[str, str]]:
    fees = notice.standard_fees
    tiers = {t.id for t in notice.tiers or []}
    for i, cat in enumerate(notice.categories):
        s, where = cat.subsidy, f"categories[{i}].subsidy"
        if s is None:
            continue
        if s.kind == "per_tier" and set(s.per_tier or {}) != tiers:
            yield where, f"per_tier must give exactly the tiers {sorted(tiers)}"
        if s.kind == "percent" and any(fee * (s.percent or 0) % 100 for fee in fees):
            yield where, "the percentage does not give whole yuan for every standard fee"
        shares = [p.amount for p in s.payers]
        if s.kind == "fixed" and None not in shares and sum(shares) != s.amount:  # type: ignore[arg-type]
            yield where, f"payers' shares {shares} do not add up to {s.amount}"


def lint_notice(path: Path) -> list[Problem]:
    try:
        notice = load_notice(path)
    except (ValidationError, ValueError) as exc:
        return [Problem(path.name, "load", str(exc))]
    where = text_path(path.parent, notice)
    if not where.exists():
        return [Problem(path.name, "document.file", f"no text at {where}")]
    text = where.read_text(encoding="utf-8")
    checks = (
        check_citations(notice, text, notice.document.file),
        check_windows(notice),
        check_references(notice),
        check_subsidies(notice),
        check_age_groups(notice),
        check_benefits(notice),
    )
    return [Problem(path.name, where, msg) for check in checks for where, msg in check]


_PLACEHOLDERS = {"fee", "subsidy", "pay_now", "net_cost", "benefit_start", "benefit_end"}


def lint_faq(path: Path) -> list[Problem]:
    """The FAQ entries beside a notice: cited quotes, engine figures, placeholders."""
    from policies.faq import faq_path, load_entries, render_entry
    from policies.loader import Library

    notice = load_notice(path)
    faq = faq_path(notice, path.parent)
    if not faq.exists():
        return []
    name = faq.name
    try:
        entries = load_entries(notice, path.parent)
    except (ValidationError, ValueError) as exc:
        return [Problem(name, "load", str(exc))]
    text = text_path(path.parent, notice).read_text(encoding="utf-8")
    problems: list[Problem] = []
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        problems.append(Problem(name, "entries", "entry ids repeat"))
    library = Library(notices=(notice,), texts={notice.document.file: text})
    for entry in entries:
        holder = _CitationHolder(cite=entry.cite)
        found = check_citations(holder, text, notice.document.file)
        problems += [Problem(name, entry.id, m) for _, m in found]
        used = set(re.findall(r"\{(\w+)\}", entry.answer))
        if used - _PLACEHOLDERS:
            problems.append(Problem(name, entry.id, f"unknown placeholders {used - _PLACEHOLDERS}"))
        if used and entry.compute is None:
            problems.append(Problem(name, entry.id, "placeholders need a compute applicant"))
        if entry.compute is not None:
            try:
                render_entry(library, notice, entry)
            except Exception as exc:  # the applicant must be quotable
                problems.append(Problem(name, entry.id, f"compute: {exc}"))
    return problems


class _CitationHolder(BaseModel):
    cite: Citation


def lint_all(directory: Path = NOTICES_DIR) -> list[Problem]:
    problems = [p for path in notice_files(directory) for p in lint_notice(path)]
    for path in notice_files(directory):
        if not any(p.file == path.name and p.where == "load" for p in problems):
            problems.extend(lint_faq(path))
    problems.extend(_check_region_overlaps(directory))
    return problems


@dataclass(frozen=True)
class Report:
    """What lint says about a notice beyond problems: how much FAQ it has, and the notice's
    words that have no English yet (shown in Chinese inside English sentences)."""

    file: str
    faq_entries: int
    untranslated: list[str]

    def __str__(self) -> str:
        faq = (
            f"{self.faq_entries} FAQ entries (other questions fall back to the clauses)"
            if self.faq_entries
            else "no FAQ entries: questions are answered from the notice's clauses"
        )
        words = "、".join(self.untranslated) if self.untranslated else "none"
        return f"{self.file}: {faq}; words without English ({len(self.untranslated)}): {words}"


EN_CATALOG = Path(__file__).resolve().parent.parent / "locales/en/LC_MESSAGES/messages.po"


def report(path: Path) -> Report:
    from babel.messages.pofile import read_po

    from policies.faq import load_entries
    from policies.i18n_extract import extract_notices

    notice = load_notice(path)
    with EN_CATALOG.open("rb") as fh:
        english = {m.id for m in read_po(fh) if m.id and m.string}
    with path.open("rb") as fh:
        shown = [text for _, _, text, _ in extract_notices(fh, None, None, {})]
    missing = [t for t in dict.fromkeys(shown) if t not in english]
    return Report(path.name, len(load_entries(notice, path.parent)), missing)


def _check_region_overlaps(directory: Path) -> Iterator[Problem]:
    by_region: dict[str, list[tuple[dt.date | None, dt.date, str]]] = {}
    for path in notice_files(directory):
        try:
            notice = load_notice(path)
        except (ValidationError, ValueError):
            continue  # already reported
        start, end = notice.window_span
        by_region.setdefault(notice.region.id, []).append((start, end, path.name))
    for spans in by_region.values():
        spans.sort(key=lambda s: s[1])
        for (_, prev_end, prev_file), (start, _, file) in itertools.pairwise(spans):
            if start is None or start <= prev_end:
                yield Problem(file, "windows", f"overlaps the windows of {prev_file}")

"""FAQ mode: answer a question in everyday Chinese from the notices, with the clause.

Two kinds of documents are searched with BM25 over jieba words and character bigrams:
the question-and-answer entries written from each notice (``<id>.faq.yaml``) and, as a
fallback, every clause passage of the notice texts. Everyday words are expanded to the
notices' words (``faq_terms.yaml``). The region comes from the question, else from the
caller (the user's last conversation); questions about other places or other insurance
are recognised as outside the notices, and a weak match is answered with "the notices do
not say" and the office to ask, never with a guess. Figures an entry states that the
quote engine computes come from the engine (``compute``), not from copied text.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from policies.engine import quote
from policies.lint import FAMILIES
from policies.loader import NOTICES_DIR, Library, default_library
from policies.models import Citation, Notice, Slug, Strict
from policies.quote import Applicant
from policies.text import N_, Msg, Param, Term, Terms

with warnings.catch_warnings():  # jieba 0.42 imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import jieba

TERMS_FILE = Path(__file__).with_name("faq_terms.yaml")
K1, B = 1.5, 0.75
ENTRY_BOOST = 1.25
# A best match whose normalised score is below this is not an answer (tuned on
# tests/faq_eval.yaml, see benchmarks/bench_faq.py).
THRESHOLD = 0.32
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[\u3400-\u9fff]|[A-Za-z]+|\d+")
_YEAR = re.compile(r"(20\d\d)\s*年")
_STOP = set("的了吗呢啊吧呀么是我你他她它们在有和与及或要能会就都也还这那哪啥咋怎么什么多少个一")
_STOP_WORDS = {
    "自己",
    "怎么",
    "怎么办",
    "什么",
    "多少",
    "可以",
    "需要",
    "请问",
    "这个",
    "那个",
    "还是",
    "如果",
    "我们",
    "他们",
    "时候",
    "一下",
    "现在",
    "今年",
    "知道",
    "是不是",
}

Kind = Literal["entry", "clause", "none", "out_of_scope", "ask_region"]


class Compute(Strict):
    birth_date: dt.date
    date: dt.date
    categories: list[str] = Field(default_factory=list)
    tier: int | None = None


class FaqEntry(Strict):
    id: Slug
    questions: list[str] = Field(min_length=1)
    answer: str = Field(min_length=2)
    cite: Citation
    compute: Compute | None = None


@dataclass(frozen=True)
class Answer:
    kind: Kind
    message: Msg  # the entry's answer, the clause's own words, or why there is none
    region: str | None = None
    source: str | None = None  # notice file
    clause: str | None = None
    quote: str | None = None  # the notice's own words
    score: float = 0.0
    entry: str | None = None  # entry id, for entries
    office: str | None = None  # who to ask, when the notices do not answer

    @property
    def answer(self) -> str:
        """The canonical Chinese (translations: ``conversations.i18n``)."""
        return self.message.zh()

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "answer": self.answer,
            "region": self.region,
            "source": self.source,
            "clause": self.clause,
            "quote": self.quote,
            "score": round(self.score, 4),
            "entry": self.entry,
            "office": self.office,
        }


@dataclass(frozen=True)
class _Doc:
    kind: Kind
    notice: Notice
    clause: str
    quote: str
    answer: Msg
    entry: FaqEntry | None
    terms: Counter[str]
    length: int


def faq_path(notice: Notice, directory: Path = NOTICES_DIR) -> Path:
    return directory / f"{notice.id}.faq.yaml"


def load_entries(notice: Notice, directory: Path = NOTICES_DIR) -> list[FaqEntry]:
    path = faq_path(notice, directory)
    if not path.exists():
        return []
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    return [FaqEntry.model_validate(item) for item in raw]


def clause_passages(text: str, limit: int = 160) -> list[tuple[str, str]]:
    """(clause, passage) chunks of a notice, following its headings (一、 （一） 1. （1）)."""
    heads = [re.compile(pattern) for _, pattern in FAMILIES]
    path: list[str] = []
    chunks: list[tuple[str, str]] = []
    current, buffer = "前言", ""

    def flush() -> None:
        nonlocal buffer
        if buffer.strip():
            chunks.append((current, buffer.strip()))
        buffer = ""

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        for level, head in enumerate(heads):
            match = head.match(line)
            if match:
                token = re.sub(r"[、.．]$", "", match.group(0).strip())
                path = [*path[:level], token]
                flush()
                current = "".join(path)
                break
        else:
            if line.startswith(("注：", "注:")):
                flush()
                current = "".join(path) + "注"
        if len(buffer) + len(line) > limit:
            flush()
        buffer += line + "\n"
    flush()
    return chunks


@dataclass(frozen=True)
class _Terms:
    synonyms: dict[str, list[str]]
    other_places: list[str]
    other_insurance: list[str]
    not_in_notices: list[str]
    topics: list[str]
    next_year: list[str]


@cache
def _terms() -> _Terms:
    raw = yaml.safe_load(TERMS_FILE.read_text(encoding="utf-8"))
    return _Terms(
        synonyms=raw["synonyms"],
        other_places=raw["other_places"],
        other_insurance=raw["other_insurance"],
        not_in_notices=raw["not_in_notices"],
        topics=raw["topics"],
        next_year=raw["next_year"],
    )


def expand(question: str) -> str:
    """The question with the notices' word appended for every everyday form it contains."""
    extra = [
        canonical  # may name several of the notices' words, separated by spaces
        for canonical, forms in _terms().synonyms.items()
        if canonical not in question and any(form in question for form in forms)
    ]
    return question + " " + " ".join(extra) if extra else question


def words(text: str) -> list[str]:
    return [
        w
        for w in jieba.cut_for_search(text)
        if _WORD.match(w) and w not in _STOP and w not in _STOP_WORDS
    ]


def tokenize(text: str) -> list[str]:
    """jieba words plus character bigrams (bigrams catch what segmentation splits oddly)."""
    bigrams = [run[i : i + 2] for run in _CJK_RUN.findall(text) for i in range(len(run) - 1)]
    return words(text) + [b for b in bigrams if not set(b) <= _STOP]


class FaqIndex:
    def __init__(self, library: Library, directory: Path = NOTICES_DIR) -> None:
        jieba.setLogLevel(logging.WARNING)
        self.library = library
        self.regions = {n.region.id: n for n in library.regions()}
        # Every name of a region or of the places around it (the provinces and cities in
        # its full name too): they carry nothing once the search is limited to one region.
        names = {
            w
            for n in library.notices
            for w in (
                n.region.name,
                *n.region.aliases,
                n.region.full_name,
                *(p for place in n.region.places for p in place.names),
                *_divisions(n.region.full_name),
            )
        }
        self._region_words = re.compile(
            "|".join(sorted(map(re.escape, names), key=len, reverse=True))
        )
        for notice in library.notices:
            for word in (notice.region.name, *notice.region.aliases, *_category_words(notice)):
                jieba.add_word(word)
        for canonical in _terms().synonyms:
            for word in canonical.split():
                jieba.add_word(word)
        self.docs: list[_Doc] = []
        for notice in library.notices:
            for entry in load_entries(notice, directory):
                answer = render_entry(library, notice, entry)
                text = " ".join([*entry.questions, *entry.questions, answer.zh(), entry.cite.quote])
                self._add("entry", notice, entry.cite.clause, entry.cite.quote, answer, entry, text)
            for clause, passage in clause_passages(library.texts[notice.document.file]):
                self._add("clause", notice, clause, passage, Msg(passage), None, passage)
        self.df: Counter[str] = Counter()
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, doc in enumerate(self.docs):
            for term, tf in doc.terms.items():
                self.df[term] += 1
                self.postings[term].append((i, tf))
        self.avgdl = sum(d.length for d in self.docs) / max(len(self.docs), 1)

    def strip_regions(self, text: str) -> str:
        """Region names carry nothing once the search is limited to one region."""
        return self._region_words.sub(" ", text)

    def _add(
        self,
        kind: Kind,
        notice: Notice,
        clause: str,
        quote: str,
        answer: Msg,
        entry: FaqEntry | None,
        text: str,
    ) -> None:
        terms = Counter(tokenize(self.strip_regions(expand(text))))
        self.docs.append(
            _Doc(kind, notice, clause, quote, answer, entry, terms, sum(terms.values()))
        )

    def idf(self, term: str) -> float:
        n, df = len(self.docs), self.df.get(term, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def search(self, question: str, region: str | None = None, limit: int = 3) -> list[Answer]:
        """Best answers first; a single explanatory answer when the notices do not answer."""
        question = question.strip()
        asked = self.library.region_in(question)
        terms = _terms()
        if asked is None and any(place in question for place in terms.other_places):
            msgid = N_("这个问题问的是其他地区；我只收录了这些地区的通知：{regions}。")
            return [_outside(Msg(msgid, {"regions": self._names()}))]
        if any(word in question for word in terms.other_insurance):
            msgid = N_(
                "这个问题不属于城乡居民医保缴费通知的范围（如职工医保、养老保险等），"
                "请向当地社保或医保经办机构咨询。"
            )
            return [_outside(Msg(msgid))]
        region = asked or region
        notice = self.regions.get(region) if region else None
        if region is not None and notice is None:
            msgid = N_("没有这个地区的通知；我只收录了：{regions}。")
            return [_outside(Msg(msgid, {"regions": self._names()}))]
        years = {int(y) for y in _YEAR.findall(question)}
        if notice is not None and years - {notice.benefit_year, notice.benefit_year - 1}:
            msgid = N_(
                "这份通知只规定了{year}年度的参保缴费，没有其他年度的标准。请向{office}咨询。"
            )
            return [self._none(notice, msgid, year=notice.benefit_year)]
        text = self.strip_regions(expand(question))
        ranked = self._rank(Counter(tokenize(text)), set(words(text)), region)
        if notice is not None and self._not_covered(notice, question):
            return [self._none(notice, N_("通知里没有写到这个问题。请向{office}咨询。"))]
        if not ranked or ranked[0][0] < THRESHOLD:
            if notice is None:
                msgid = N_("请问您问的是哪个地区？目前收录：{regions}。")
                return [Answer("ask_region", Msg(msgid, {"regions": self._names()}))]
            return [
                self._none(notice, N_("通知里没有找到能回答这个问题的内容。请向{office}咨询。"))
            ]
        return [self._answer(score, i) for score, i in ranked[:limit]]

    def _rank(
        self, query: Counter[str], query_words: set[str], region: str | None
    ) -> list[tuple[float, int]]:
        """Documents by BM25, normalised by what the query's words could score at best."""
        scores: dict[int, float] = defaultdict(float)
        best_possible = sum(self.idf(w) * (K1 + 1) for w in query_words)
        for term, qtf in query.items():
            idf = self.idf(term)
            for i, tf in self.postings.get(term, ()):
                doc = self.docs[i]
                if region is not None and doc.notice.region.id != region:
                    continue
                norm = tf + K1 * (1 - B + B * doc.length / self.avgdl)
                scores[i] += idf * tf * (K1 + 1) / norm * min(qtf, 2)
        if best_possible == 0:
            return []
        ranked = [
            (score / best_possible * (ENTRY_BOOST if self.docs[i].kind == "entry" else 1.0), i)
            for i, score in scores.items()
        ]
        ranked.sort(reverse=True)
        return ranked

    def _answer(self, score: float, i: int) -> Answer:
        doc = self.docs[i]
        return Answer(
            kind=doc.kind,
            message=doc.answer,
            region=doc.notice.region.id,
            source=doc.notice.document.file,
            clause=doc.clause,
            quote=doc.quote,
            score=score,
            entry=doc.entry.id if doc.entry else None,
        )

    def _not_covered(self, notice: Notice, question: str) -> bool:
        terms = _terms()
        if any(word in question for word in terms.not_in_notices):
            return True
        text = self.library.texts[notice.document.file]
        if any(t in question and t not in text for t in terms.topics):
            return True  # e.g. a deductible, in a notice that never mentions one
        newborn = any(f in question for f in terms.synonyms.get("新生儿 出生", []))
        return not newborn and any(word in question for word in terms.next_year)

    def _none(self, notice: Notice, msgid: str, **params: Param) -> Answer:
        office = notice.office(notice.ask_office)
        name = office.name if office else ""
        return Answer(
            "none",
            Msg(msgid, {**params, "office": Term(name)}),
            region=notice.region.id,
            source=notice.document.file,
            office=name,
        )

    def _names(self) -> Terms:
        return Terms(n.region.name for n in self.regions.values())


_DIVISION = re.compile(r".+?(?:自治区|省|市|区|县|旗)")


def _divisions(full_name: str) -> list[str]:
    """黑龙江省哈尔滨市通河县 → 黑龙江省, 黑龙江, 哈尔滨市, 哈尔滨, 通河县, 通河."""
    parts = _DIVISION.findall(full_name)
    short = [re.sub(r"(?:自治区|省|市|区|县|旗)$", "", p) for p in parts]
    return [p for p in [*parts, *short] if len(p) >= 2]


def _outside(message: Msg) -> Answer:
    return Answer("out_of_scope", message)


def _category_words(notice: Notice) -> list[str]:
    """The notice's own short terms (categories, tiers, windows, offices) for jieba."""
    names = [w for c in notice.categories for w in (c.name, *c.aliases)]
    names += [t.name for t in notice.tiers or []] + [w.name for w in notice.windows]
    names += [o.name for o in notice.offices]
    return [w for w in names if len(w) <= 10]


def render_entry(library: Library, notice: Notice, entry: FaqEntry) -> Msg:
    """The entry's answer with the engine's figures in place of its placeholders."""
    if entry.compute is None:
        return Msg(entry.answer)
    c = entry.compute
    q = quote(
        library,
        Applicant(notice.region.id, c.birth_date, c.date, frozenset(c.categories), c.tier),
    )
    values: dict[str, int | dt.date | None] = {
        "fee": q.fee,
        "subsidy": q.subsidy,
        "pay_now": q.pay_now,
        "net_cost": q.net_cost,
        "benefit_start": q.benefit_start,
        "benefit_end": q.benefit_end,
    }
    used = set(re.findall(r"\{(\w+)\}", entry.answer))
    missing = sorted(k for k in used if values.get(k) is None)
    if missing:
        raise ValueError(f"the engine gives no {', '.join(missing)} for this applicant")
    params: dict[str, Param] = {}
    for key in used:
        value = values[key]
        params[key] = value if isinstance(value, dt.date) else int(value or 0)
    return Msg(entry.answer, params)


@cache
def default_index() -> FaqIndex:
    return FaqIndex(default_library())

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

import calendar
import dataclasses
import datetime as dt
import hashlib
import logging
import math
import os
import pickle
import re
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import Field

from policies.engine import find_window, quote
from policies.faq_facts import Date, Facts, read_facts
from policies.lint import FAMILIES
from policies.loader import NOTICES_DIR, Library, default_library
from policies.models import Citation, Notice, Slug, Strict
from policies.normalize import normalize
from policies.quote import Applicant, ApplicantError, Quote, SourceRef
from policies.text import N_, Msg, Param, Term, Terms, Yuan

if TYPE_CHECKING:
    import jieba


@cache
def _jieba() -> ModuleType:
    """jieba, imported on the first question (0.1–0.2 s), so a start that answers no
    question does not pay for it.

    jieba 0.42 reads its data files through pkg_resources when it can import it, else
    straight from its package directory (the same files): pkg_resources, deprecated, takes
    0.2–0.4 s to import, more than jieba itself, so jieba is shown it is not there."""
    hidden = "pkg_resources" not in sys.modules
    if hidden:
        sys.modules["pkg_resources"] = None  # type: ignore[assignment]  # import fails
    try:
        import jieba
    finally:
        if hidden:
            del sys.modules["pkg_resources"]
    module: ModuleType = jieba
    return module


TERMS_FILE = Path(__file__).with_name("faq_terms.yaml")
K1, B = 1.5, 0.75
ENTRY_BOOST = 1.25
# A best match whose normalised score is below this is not an answer (tuned on
# tests/faq_eval.yaml, see benchmarks/bench_faq.py).
THRESHOLD = 0.32
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[\u3400-\u9fff]|[A-Za-z]+|\d+")
_YEAR = re.compile(r"(20\d\d)(?:\s*年|(?![\d/.-]))")
_LATIN = re.compile(r"[a-z]+")
_DISTRICT = re.compile(r"([\u4e00-\u9fff]{2,3}(?:区|县))|\b([a-z]+ (?:district|county))\b")
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

Kind = Literal["entry", "clause", "quote", "channels", "none", "out_of_scope", "ask_region"]
ANSWERS: tuple[Kind, ...] = ("quote", "channels", "entry", "clause")  # kinds that answer


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
    silent: bool = False  # the answer is that the notice does not say


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
    clauses: tuple[str, ...] = ()  # every clause a computed answer rests on

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
            "clauses": list(self.clauses),
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
    facts: Facts | None  # the situation an entry is about (its questions and compute)
    window: str | None  # the payment window of the entry's computed example


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
    elsewhere: list[str]
    other_schemes: list[str]
    resident_context: list[str]
    intents: dict[str, list[str]]
    older_than_newborn: list[str]
    newborn: list[str]
    late: list[str]
    offline_first: list[str]
    not_districts: list[str]
    english: list[tuple[str, re.Pattern[str]]]


@cache
def _terms() -> _Terms:
    raw = yaml.safe_load(TERMS_FILE.read_text(encoding="utf-8"))
    english = [
        (canonical, re.compile(r"\b(?:" + "|".join(map(re.escape, forms)) + r")\b"))
        for canonical, forms in raw["english"].items()
    ]
    return _Terms(
        synonyms=raw["synonyms"],
        other_places=raw["other_places"],
        other_insurance=raw["other_insurance"],
        not_in_notices=raw["not_in_notices"],
        topics=raw["topics"],
        next_year=raw["next_year"],
        elsewhere=raw["elsewhere"],
        other_schemes=raw["other_schemes"],
        resident_context=raw["resident_context"],
        intents=raw["intents"],
        older_than_newborn=raw["older_than_newborn"],
        newborn=raw["newborn"],
        late=raw["late"],
        offline_first=raw["offline_first"],
        not_districts=raw["not_districts"],
        english=english,
    )


def prepare(question: str) -> str:
    """The canonical form (Simplified, half-width, lower case) with the notices' words
    appended for the English and pinyin it contains."""
    text = normalize(question.strip())
    if not re.search(r"[a-z]", text):
        return text
    extra = [canonical for canonical, form in _terms().english if form.search(text)]
    return text + " " + " ".join(extra) if extra else text


def facts_of(text: str, notice: Notice | None) -> Facts:
    terms = _terms()
    return read_facts(
        text, notice, terms.intents, terms.newborn, terms.older_than_newborn, terms.late
    )


def expand(question: str) -> str:
    """The question with the notices' word appended for every everyday form it contains."""
    extra = [
        canonical  # may name several of the notices' words, separated by spaces
        for canonical, forms in _terms().synonyms.items()
        if canonical not in question and any(form in question for form in forms)
    ]
    return question + " " + " ".join(extra) if extra else question


def words(text: str, segmenter: jieba.Tokenizer | None = None) -> list[str]:
    return [
        w
        for w in (segmenter or _jieba().dt).cut_for_search(text)
        if _WORD.match(w) and w not in _STOP and w not in _STOP_WORDS
    ]


def tokenize(text: str, segmenter: jieba.Tokenizer | None = None) -> list[str]:
    """jieba words plus character bigrams (bigrams catch what segmentation splits oddly)."""
    bigrams = [run[i : i + 2] for run in _CJK_RUN.findall(text) for i in range(len(run) - 1)]
    return words(text, segmenter) + [b for b in bigrams if not set(b) <= _STOP]


# -- start-up: the index and jieba's dictionary are built once and kept on disk ----------

_MAX_WORD = 8  # longest dictionary word looked for in the corpus
_PAD_WORD = "龘龘龘龘"  # never typed; carries the rest of the full dictionary's total count


def cache_dir() -> Path:
    """Where the built index is kept: $FAQ_CACHE_DIR, else the user's cache directory."""
    configured = os.environ.get("FAQ_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "yibao-bot"


def _source_key(directory: Path) -> str:
    """A digest of everything the index is built from: data, term lists and this code."""
    digest = hashlib.sha256(_jieba().__version__.encode())
    here = Path(__file__).parent
    files = sorted(directory.glob("*.yaml")) + sorted((directory / "texts").glob("*.txt"))
    files += [TERMS_FILE, *sorted(here.glob("*.py"))]  # the policy code computes the figures
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _vocabulary(corpus: str, added: set[str]) -> dict[str, int]:
    """Every word of jieba's dictionary that occurs in the corpus, with its count, and the
    words we add. Segmenting with only these gives the same words for the corpus as the
    full dictionary, and loads in milliseconds instead of seconds."""
    full = _jieba().Tokenizer()
    full.initialize()
    for word in added:
        full.add_word(word)
    vocabulary: dict[str, int] = {}
    for run in _CJK_RUN.findall(corpus):
        for i in range(len(run)):
            for j in range(i + 1, min(len(run), i + _MAX_WORD) + 1):
                count = full.FREQ.get(run[i:j])
                if count:
                    vocabulary[run[i:j]] = count
    # The same total as the full dictionary, so word probabilities (and so the splits
    # jieba chooses) stay as they were.
    vocabulary[_PAD_WORD] = max(full.total - sum(vocabulary.values()), 1)
    return vocabulary


def _segmenter(dictionary: Path) -> jieba.Tokenizer:
    segmenter = _jieba().Tokenizer(dictionary=str(dictionary))
    segmenter.tmp_dir = str(dictionary.parent)
    segmenter.initialize()
    return segmenter


# A _Doc with its notice as a position in the library (notices are loaded, not stored).
_Stored = tuple[
    Kind, int, str, str, Msg, "FaqEntry | None", Counter[str], int, Facts | None, str | None
]


@dataclass(frozen=True)
class _Built:
    """What building costs: kept on disk (pickle) between starts."""

    docs: list[_Stored]
    unknown_groups: dict[str, list[str]]


class FaqIndex:
    def __init__(
        self, library: Library, directory: Path = NOTICES_DIR, cache: Path | None = None
    ) -> None:
        _jieba().setLogLevel(logging.WARNING)
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
        folder = cache or cache_dir()
        key = _source_key(directory)
        dictionary, stored = folder / f"faq-{key}.dict", folder / f"faq-{key}.pickle"
        built = _load(stored) if dictionary.exists() else None
        if built is None:
            entries = {n.id: load_entries(n, directory) for n in library.notices}
            added = {w for n in library.notices for w in _added_words(n)}
            added |= {w for canonical in _terms().synonyms for w in canonical.split()}
            corpus = "\n".join(
                [
                    *library.texts.values(),
                    TERMS_FILE.read_text(encoding="utf-8"),
                    *(e.answer + "".join(e.questions) for es in entries.values() for e in es),
                ]
            )
            dictionary = _write_dictionary(dictionary, _vocabulary(corpus, added))
            self.segmenter = _segmenter(dictionary)
            built = self._build(entries)
            _save(stored, built)
        else:
            self.segmenter = _segmenter(dictionary)
        self.docs = [
            _Doc(kind, library.notices[at], clause, quote, answer, entry, terms, n, facts, w)
            for kind, at, clause, quote, answer, entry, terms, n, facts, w in built.docs
        ]
        self.unknown_groups = built.unknown_groups
        self.df: Counter[str] = Counter()
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, doc in enumerate(self.docs):
            for term, tf in doc.terms.items():
                self.df[term] += 1
                self.postings[term].append((i, tf))
        self.avgdl = sum(d.length for d in self.docs) / max(len(self.docs), 1)

    def _build(self, entries: dict[str, list[FaqEntry]]) -> _Built:
        library = self.library
        docs: list[_Stored] = []
        for position, notice in enumerate(library.notices):
            for entry in entries[notice.id]:
                answer = render_entry(library, notice, entry)
                text = " ".join([*entry.questions, *entry.questions, answer.zh(), entry.cite.quote])
                docs.append(
                    self._doc(
                        "entry", position, entry.cite.clause, entry.cite.quote, answer, entry, text
                    )
                )
            for clause, passage in clause_passages(library.texts[notice.document.file]):
                docs.append(
                    self._doc("clause", position, clause, passage, Msg(passage), None, passage)
                )
        # Groups other notices name that this one never mentions (通河县 has no 残疾人):
        # asked about one, this notice cannot answer.
        groups = {normalize(w) for n in library.notices for w in _group_words(n, True)}
        unknown_groups = {
            n.id: sorted(
                w
                for w in groups - {normalize(w) for w in _group_words(n)}
                if w not in normalize(library.texts[n.document.file])
            )
            for n in library.notices
        }
        return _Built(docs, unknown_groups)

    def strip_regions(self, text: str) -> str:
        """Region names carry nothing once the search is limited to one region."""
        return self._region_words.sub(" ", text)

    def _doc(
        self,
        kind: Kind,
        position: int,
        clause: str,
        quote: str,
        answer: Msg,
        entry: FaqEntry | None,
        text: str,
    ) -> _Stored:
        notice = self.library.notices[position]
        terms = Counter(tokenize(self.strip_regions(expand(text)), self.segmenter))
        facts, window = None, None
        if entry is not None:
            # What the entry is about comes from its questions, not its answer (an answer
            # mentions the neighbouring cases too).
            facts = facts_of(normalize(" ".join(entry.questions)), notice)
            if not facts.intents:
                said = facts_of(normalize(answer.zh()), notice).intents
                facts = dataclasses.replace(facts, intents=said)
            if entry.compute is not None:
                found = find_window((notice,), entry.compute.date)
                window = found[1].id if found else None
        return (
            kind,
            position,
            clause,
            quote,
            answer,
            entry,
            terms,
            sum(terms.values()),
            facts,
            window,
        )

    def idf(self, term: str) -> float:
        n, df = len(self.docs), self.df.get(term, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def search(self, question: str, region: str | None = None, limit: int = 3) -> list[Answer]:
        """Best answers first; a single explanatory answer when the notices do not answer."""
        text = prepare(question)
        named = self.library.regions_in(text)
        asked = named[0] if len(named) == 1 else None
        notice = self.regions.get(asked or region or "")
        facts = facts_of(text, notice)
        outside = self._outside(text, bool(named), facts)
        if outside is not None:
            return [outside]
        if len(named) > 1:  # never another region's figures: ask which one
            msgid = N_("请问您问的是哪个地区？目前收录：{regions}。")
            names = Terms(self.regions[r].region.name for r in named if r in self.regions)
            return [Answer("ask_region", Msg(msgid, {"regions": names}))]
        region = asked or region
        if region is not None and notice is None:
            msgid = N_("没有这个地区的通知；我只收录了：{regions}。")
            return [_outside(Msg(msgid, {"regions": self._names()}))]
        if notice is None:  # never another region's figures: ask which one
            msgid = N_("请问您问的是哪个地区？目前收录：{regions}。")
            return [Answer("ask_region", Msg(msgid, {"regions": self._names()}))]
        years = {int(y) for y in _YEAR.findall(text)}
        if not facts.personal and years - {notice.benefit_year, notice.benefit_year - 1}:
            msgid = N_(
                "这份通知只规定了{year}年度的参保缴费，没有其他年度的标准。请向{office}咨询。"
            )
            return [self._none(notice, msgid, year=notice.benefit_year)]
        # English words have been translated into the notices' words by now; left in,
        # they would only count as words no entry has.
        searched = _LATIN.sub(" ", text)
        for negated in facts.negated_words:  # "不是低保" is no reason to show 低保's entry
            searched = searched.replace(negated, " ")
        expanded = self.strip_regions(expand(searched))
        query = Counter(tokenize(expanded, self.segmenter))
        ranked = self._rank(query, set(words(expanded, self.segmenter)), region)
        if not facts.personal and self._not_covered(notice, text):
            return [self._none(notice, N_("通知里没有写到这个问题。请向{office}咨询。"))]
        asks_money = facts.intents & {"fee", "subsidy"}
        unknown = any(w in text for w in self.unknown_groups[notice.id])
        if asks_money and not facts.categories and unknown:
            msgid = N_("通知没有写到这类人员的参保资助或缴费规定。请向{office}咨询。")
            return [self._none(notice, msgid)]
        ranked = self._rerank(ranked, notice, facts)
        found = [self._answer(score, i) for score, i in ranked[:limit]]
        first = self._computed(notice, facts, text)
        if first is not None:
            return [first, *found][:limit]
        if not ranked or ranked[0][0] < THRESHOLD:
            return [
                self._none(notice, N_("通知里没有找到能回答这个问题的内容。请向{office}咨询。"))
            ]
        return found

    def _outside(self, text: str, named: bool, facts: Facts) -> Answer | None:
        """Other places (with no region of ours named; the user's last region does not
        count) and other insurance (even with a region named)."""
        terms = _terms()
        places = [*terms.elsewhere, *terms.other_places]
        if (not named and any(place in text for place in places)) or self._other_district(text):
            msgid = N_("这个问题问的是其他地区；我只收录了这些地区的通知：{regions}。")
            return _outside(Msg(msgid, {"regions": self._names()}))
        other = not facts.categories and (  # 下岗职工 (养老金 or not) is one of our groups
            any(word in text for word in terms.other_insurance)
            or (
                any(word in text for word in terms.other_schemes)
                and not any(word in text for word in terms.resident_context)
            )
        )
        if other:
            msgid = N_(
                "这个问题不属于城乡居民医保缴费通知的范围（如职工医保、养老保险等），"
                "请向当地社保或医保经办机构咨询。"
            )
            return _outside(Msg(msgid))
        return None

    def _other_district(self, text: str) -> bool:
        """A district or county named that is none of ours (哈尔滨道里区, 渝中区, Yubei
        district): a place regions_in does not know is another place."""
        for match in _DISTRICT.finditer(text):
            name = match.group(1) or match.group(2)
            generic = set(name[:-1]) & set("省市县区旗镇乡村各全本外该此每")
            if generic or name in _terms().not_districts:
                continue
            if not self.library.regions_in(name):
                return True
        return False

    def _rerank(
        self, ranked: list[tuple[float, int]], notice: Notice, facts: Facts
    ) -> list[tuple[float, int]]:
        """Entries about the asker's situation and question before the others."""
        window = None
        if facts.payment is not None:
            paid = _resolve_payment(notice, facts.payment)
            found = find_window((notice,), paid) if paid else None
            window = found[1].id if found else None
        scored = [(score * _fit(self.docs[i], facts, window), i) for score, i in ranked]
        scored.sort(reverse=True)
        return scored

    def _computed(self, notice: Notice, facts: Facts, text: str) -> Answer | None:
        """An answer the engine computes: the channels, or a quote for the asker's facts."""
        if _asks_channels(facts):
            offline_first = any(w in text for w in _terms().offline_first)
            return channels_answer(notice, offline_first, text)
        if not facts.personal or facts.intents & {"where", "register", "refund", "limit"}:
            return None
        if "subsidy" in facts.intents and not facts.categories:
            return None  # 财政补助 by payment date: the entries say it with their clause
        next_year = any(word in text for word in _terms().next_year)
        return quote_answer(self.library, notice, facts, next_year)

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
        if doc.entry is not None and doc.entry.silent:
            office = doc.notice.office(doc.notice.ask_office)
            return Answer(
                "none",
                doc.answer,
                region=doc.notice.region.id,
                source=doc.notice.document.file,
                clause=doc.clause,
                quote=doc.quote,
                score=score,
                entry=doc.entry.id,
                office=office.name if office else None,
            )
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


def _group_words(notice: Notice, subsidised: bool = False) -> list[str]:
    cats = [c for c in notice.categories if c.subsidy is not None or not subsidised]
    return [w for c in cats for w in (c.name, *c.aliases) if len(w) >= 2]


def _load(path: Path) -> _Built | None:
    try:
        with path.open("rb") as fh:
            built = pickle.load(fh)  # our own file, written by _save below
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    return built if isinstance(built, _Built) else None


def _write(path: Path, data: bytes) -> bool:
    """Whole or not at all (another process may be starting too); False where the disk
    refuses, which costs the next start a build and nothing else."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as exc:
        logging.getLogger(__name__).info("FAQ index not stored: %s", exc.__class__.__name__)
        return False
    return True


def _save(path: Path, built: _Built) -> None:
    _write(path, pickle.dumps(built, protocol=pickle.HIGHEST_PROTOCOL))


def _write_dictionary(path: Path, vocabulary: dict[str, int]) -> Path:
    lines = "".join(f"{word} {count}\n" for word, count in sorted(vocabulary.items()))
    if not _write(path, lines.encode()):  # no cache directory: a private temporary one
        path = Path(tempfile.mkdtemp(prefix="faq-")) / path.name
        path.write_text(lines, encoding="utf-8")
    return path


def _added_words(notice: Notice) -> list[str]:
    return [notice.region.name, *notice.region.aliases, *_category_words(notice)]


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


# -- answers the engine computes ---------------------------------------------------------

_ADULT_BIRTH = dt.date(1980, 1, 1)  # an adult, where the question gives no birth date
_ASKS_OTHER_THAN_CHANNELS = frozenset(
    {"fee", "subsidy", "when", "register", "waiting", "refund", "limit", "benefit"}
)


def _asks_channels(facts: Facts) -> bool:
    """Where to pay, for everyone (a group's own way to pay is an entry of its own)."""
    return (
        "where" in facts.intents
        and not facts.intents & _ASKS_OTHER_THAN_CHANNELS
        and not facts.categories
        and facts.newborn is None
    )


def _day(year: int, month: int, day: int | None) -> dt.date:
    last = calendar.monthrange(year, month)[1]
    return dt.date(year, month, min(day or 15, last))


def _resolve_payment(notice: Notice, asked: Date) -> dt.date | None:
    """A payment month as the notice means it: the year whose date one of its windows
    takes, else the year nearest its benefit year."""
    years = [asked.year] if asked.year else [notice.benefit_year - 1, notice.benefit_year]
    days = [_day(y, asked.month, asked.day) for y in years]
    found = [(d, find_window((notice,), d)) for d in days]
    inside = [(d, f[1]) for d, f in found if f is not None]
    # A window the notice dates beats one that only runs "即日起" from its document year.
    inside.sort(key=lambda pair: pair[1].start is None)
    return inside[0][0] if inside else days[0]


def _resolve_birth(notice: Notice, asked: Date, paid: dt.date | None) -> dt.date:
    if asked.year:
        return _day(asked.year, asked.month, asked.day)
    if paid is not None:  # the latest such month not after the payment
        born = _day(paid.year, asked.month, asked.day)
        return born if born <= paid else _day(paid.year - 1, asked.month, asked.day)
    born = _day(notice.benefit_year, asked.month, asked.day)
    inside = find_window((notice,), born) is not None
    return born if inside else _day(notice.benefit_year - 1, asked.month, asked.day)


def _fit(doc: _Doc, facts: Facts, window: str | None) -> float:
    """How well an entry's situation fits the question's: intents, identity, newborn or
    not, payment window, tier. 1.0 where either side says nothing."""
    about = doc.facts
    if about is None:
        return 1.0
    fit = 1.0
    if facts.intents and about.intents:
        fit *= 1.15 if facts.intents & about.intents else 0.85
    if facts.categories and about.categories:
        fit *= 1.2 if facts.categories & about.categories else 0.8
        if about.categories - facts.categories:  # the entry is about a combination
            fit *= 0.8 if facts.only else 0.9
    elif facts.categories or about.categories:
        fit *= 0.85  # one side is about a group, the other is not
    # A condition the question states and the entry contradicts makes it another case.
    if facts.negated & about.categories:
        fit *= 0.6
    if facts.newborn is not None and about.newborn is not None:
        fit *= 1.15 if facts.newborn == about.newborn else 0.75
    elif facts.newborn:
        fit *= 0.9  # a question about a baby, an entry that is not
    if facts.tier is not None and about.tier is not None:
        fit *= 1.1 if facts.tier == about.tier else 0.7
    if window is not None and doc.window is not None:
        fit *= 1.1 if window == doc.window else 0.85
    if about.late:
        fit *= 1.1 if facts.late else 0.85  # a question not about paying late is about the
    return fit  # regular period


def _channel_word(name: str) -> str:
    """The words a resident would type for a channel: 蒙速办（搜索） → 蒙速办."""
    return normalize(re.split(r"[（(“]", name, maxsplit=1)[0]) or normalize(name)


def channels_answer(notice: Notice, offline_first: bool, question: str = "") -> Answer:
    """Where to pay: every channel the notice lists, offline first for those without a
    smartphone; a channel the question names first, with how to use it."""
    office = notice.office(notice.ask_office)
    office_name = office.name if office else ""
    if not notice.channels:
        note = notice.channels_note
        assert note is not None  # a notice without channels says where to find them
        cite = note.cite or notice.document.cite
        return Answer(
            "channels",
            Msg(note.text),
            region=notice.region.id,
            source=notice.document.file,
            clause=cite.clause,
            quote=cite.quote,
            score=1.0,
            office=office_name,
        )
    online = [c for c in notice.channels if c.kind == "online"]
    offline = [c for c in notice.channels if c.kind == "offline"]
    params: dict[str, Param] = {
        "online": Terms(c.name for c in online),
        "offline": Terms(c.name for c in offline),
        "office": Term(office_name),
    }
    if not offline:
        msgid = N_("通知只列了线上缴费渠道：{online}。没有智能手机的，线下怎么交请向{office}咨询。")
    elif not online:
        msgid = N_("缴费渠道（线下）：{offline}。")
    elif offline_first:
        msgid = N_("线下缴费：{offline}；线上缴费：{online}。")
    else:
        msgid = N_("线上缴费：{online}；线下缴费：{offline}。")
    first = (offline or online)[0] if offline_first else notice.channels[0]
    named = sorted(
        (c for c in notice.channels if _channel_word(c.name) in question),
        key=lambda c: -len(_channel_word(c.name)),
    )
    if named:
        first = named[0]
        if first.how:
            params |= {"channel": Term(first.name), "how": Term(first.how)}
            params["all"] = Terms(c.name for c in notice.channels)
            msgid = N_("{channel}缴费：{how}。全部缴费渠道：{all}。")
    return Answer(
        "channels",
        Msg(msgid, params),
        region=notice.region.id,
        source=notice.document.file,
        clause=first.cite.clause,
        quote=first.cite.quote,
        score=1.0,
        office=office_name if not offline else None,
        clauses=tuple(dict.fromkeys(c.cite.clause for c in notice.channels)),
    )


def quote_answer(
    library: Library, notice: Notice, facts: Facts, next_year: bool = False
) -> Answer | None:
    """The engine's quote for the facts a question states (dates, identity, tier)."""
    paid = _resolve_payment(notice, facts.payment) if facts.payment else None
    born = _resolve_birth(notice, facts.birth, paid) if facts.birth else None
    if paid is None:
        if born is None or facts.newborn is False:
            return None
        paid = born  # a baby's parents asking what registering now costs
    if born is None:
        born = paid if facts.newborn else _ADULT_BIRTH
    tiers = notice.tiers or []
    tier = facts.tier if facts.tier is not None or not tiers else tiers[0].id
    try:
        q = quote(
            library, Applicant(notice.region.id, born, paid, frozenset(facts.categories), tier)
        )
    except ApplicantError:
        return None
    return _quote_answer(notice, q, paid, facts, next_year)


def _quote_answer(notice: Notice, q: Quote, paid: dt.date, facts: Facts, next_year: bool) -> Answer:
    office = q.office or next((n.ask for n in q.notes if n.ask), None)
    if office is None:
        ask = notice.office(notice.ask_office)
        office = ask.name if ask else ""
    where = [q.window_name or ""]
    tier = notice.tier(q.tier) if q.tier is not None else None
    if tier is not None:
        where.append(tier.name)
    params: dict[str, Param] = {
        "when": paid,
        "where": Terms(w for w in where if w),
        "office": Term(office),
    }
    if q.eligible and q.benefit_start is not None and q.benefit_end is not None:
        params |= {"start": q.benefit_start, "end": q.benefit_end}
        if q.fee is None:
            msgid = N_(
                "{when}缴费（{where}）：通知没有写明应缴金额，请向{office}咨询；"
                "待遇期{start}至{end}。"
            )
        elif q.subsidy is None or q.pay_now is None:
            params["fee"] = Yuan(q.fee)
            msgid = N_(
                "{when}缴费（{where}）：个人缴费标准{fee}，资助金额通知没有写明，"
                "请向{office}咨询；待遇期{start}至{end}。"
            )
        elif q.subsidy_mode == "reimbursed" and q.net_cost is not None:
            params |= {
                "fee": Yuan(q.fee),
                "subsidy": Yuan(q.subsidy),
                "pay_now": Yuan(q.pay_now),
                "net": Yuan(q.net_cost),
            }
            msgid = N_(
                "{when}缴费（{where}）：个人缴费标准{fee}，先缴后补：现在需缴{pay_now}，"
                "补助{subsidy}到账后实际负担{net}；待遇期{start}至{end}。"
            )
        else:
            params |= {"fee": Yuan(q.fee), "subsidy": Yuan(q.subsidy), "pay_now": Yuan(q.pay_now)}
            msgid = N_(
                "{when}缴费（{where}）：个人缴费标准{fee}，参保资助{subsidy}，"
                "现在需缴{pay_now}；待遇期{start}至{end}。"
            )
    elif q.notice is None:
        params |= {"region": Term(q.region_name)}
        msgid = N_("{when}缴费不在已收录的{region}通知的缴费期内，请向{office}咨询。")
    elif q.eligible is None:
        msgid = N_("{when}缴费（{where}）：通知没有写明能否参保缴费，请向{office}咨询。")
    else:
        msgid = N_("{when}缴费（{where}）：按通知不能参保或享受本年度待遇。")
    main = q.alternatives[0].source if next_year and q.alternatives else _main_source(q, facts)
    return Answer(
        "none" if q.eligible is None else "quote",  # undecided: the notice does not say
        Msg(msgid, params),
        region=notice.region.id,
        source=main.file if main else notice.document.file,
        clause=main.clause if main else None,
        quote=main.quote if main else None,
        score=1.0,
        office=office if not q.eligible else None,
        clauses=tuple(dict.fromkeys(c.clause for c in q.citations)),
    )


def _main_source(q: Quote, facts: Facts) -> SourceRef | None:
    """The clause that decides the figure asked about."""
    steps = {s.figure: s.source for s in q.trace if s.source is not None}
    if not q.eligible:
        noted = next((n.source for n in q.notes if n.source is not None), None)
        return noted or steps.get("window")
    asks_fee = bool(facts.intents & {"fee", "subsidy"})
    start = steps.get("benefit_start")
    if not asks_fee and facts.intents & {"when", "benefit", "waiting"} and start:
        return start
    if q.subsidy and "subsidy" in steps and facts.categories:
        return steps["subsidy"]
    if q.fee is None or q.subsidy is None:  # the gap is what is asked about
        noted = next((n.source for n in q.notes if n.ask and n.source is not None), None)
        if noted is not None:
            return noted
    newborn_rule = q.benefit_start is not None and any(
        s.figure == "benefit_start" and s.text.startswith("新生儿") for s in q.trace
    )
    if asks_fee and not newborn_rule:
        return steps.get("fee") or start
    return start or steps.get("fee")

"""What one message says, whatever question it answers.

The conversation asks region → birth date → categories → tier → payment date, but people
answer in their own order and words: "我是商洛的低保户，1956年出生，想知道交多少钱" holds a
region, a category, a birth year and a question. :func:`understand` pulls every answer a
message holds, in Simplified, Traditional or English, so the conversation fills them all
and asks only what is still missing. It knows the notices (region and category names),
the bot's clock and the question being asked, nothing of Telegram.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

from conversations import dates
from conversations.dates import Mention
from conversations.state import Step
from policies.loader import SAFE_LOADER, Library
from policies.models import Category
from policies.normalize import normalize

Nav = Literal["back", "restart", "cancel", "done", "none"]
Role = Literal["birth", "payment"]

# Text around a date that says whose date it is.
_BIRTH_WORDS = re.compile(
    r"出生|出世|生日|生于|生的|生人|年生|月生|号生|日生|生$|born|birth|dob|岁"
)
_PAY_WORDS = re.compile(r"交|缴|付|办|去|pay|paid|enrol|enroll|register")
_CLAUSE = re.compile(r"[,，。;；!！?？\n]|\band\b|\s{2,}")
_CORRECTION = re.compile(
    r"不对|错了|搞错|弄错|写错|打错|不是.{0,6}是|改成|改为|应该是"
    r"|sorry|wrong|actually|i meant|no wait"
)
# "那二档呢", "如果下个月交呢": a question though it states something.
_WHAT_IF = re.compile(
    r"^(那|如果|要是|假如|万一|what about|how about|and if|what if).*呢?\s*$|呢\s*[?]?$"
)
# What a message is once answers and fillers are taken out, for "is it only navigation?"
_FILLER = re.compile(
    r"[\s,，。.!！~～…、:：;；\"'“”‘’()（）\[\]【】]"
    r"|请|吧|了|啊|呀|嗯|哦|噢|吗|的|一下|我要|我想"
    r"|please|pls|thanks|thank you|\bi\b|\bto\b|\bthe\b"
)
_WHAT_IF_START = re.compile(r"\s*(那|如果|要是|假如|万一|what|how|and)")
_IDENTITY = re.compile(
    r"我是|我们是|我家|俺是|俺家|本人|家里是|属于|我爸|我妈|老人是"
    r"|\bi am\b|\bi'm\b|\bwe are\b|\bmy family\b"
)
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")


@dataclass(frozen=True)
class Understanding:
    regions: tuple[str, ...] = ()  # one: the region; several: ask which
    region_typo: bool = False  # found one edit away from a region's name
    region_unsure: bool = False  # only a guess ("商落…"): asked, not taken
    birth: Mention | None = None
    payment: Mention | None = None
    id_number: bool = False  # the birth date came from a resident ID number
    bad_id: bool = False  # an ID-shaped number whose checksum or date is wrong
    bad_date: bool = False  # a date-shaped text that is no day (2023-02-30, 3/5/1956)
    categories: tuple[str, ...] = ()  # ids, in the region known
    category_choices: tuple[str, ...] = ()  # an everyday word that may be any of these
    category_words: tuple[str, ...] = ()  # group words, kept until the region is known
    none_of_these: bool = False
    tier: int | None = None
    newborn: bool = False
    child: bool = False
    student: bool = False
    nav: Nav | None = None
    question: bool = False
    quote_intent: bool = False  # asks what to pay: the quote answers it

    @property
    def answers(self) -> bool:
        """Whether the message answers any question of the quote."""
        return bool(
            self.regions
            or self.birth
            or self.payment
            or self.categories
            or self.category_choices
            or self.category_words
            or self.none_of_these
            or self.tier is not None
            or self.newborn
        )


_word = cache(normalize)  # the vocabulary's and notices' own words, normalised once


@cache
def vocabulary() -> dict[str, Any]:
    text = resources.files("conversations").joinpath("vocabulary.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.load(text, Loader=SAFE_LOADER)
    return data


def _has(text: str, word: str) -> bool:
    return _pattern((word,)).search(text) is not None


def _any(text: str, words: list[str]) -> bool:
    return _pattern(tuple(words)).search(text) is not None


@cache
def _pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for a word list: Latin words whole ("no" is not in "know"), others anywhere."""
    parts = []
    for word in sorted({_word(w) for w in words}, key=len, reverse=True):
        escaped = re.escape(word)
        latin = word.isascii() and word[:1].isalnum()
        parts.append(rf"(?<![a-z]){escaped}(?![a-z])" if latin else escaped)
    return re.compile("|".join(parts))


def understand(
    text: str, *, step: Step, region: str | None, library: Library, today: dt.date
) -> Understanding:
    """Every answer ``text`` holds; ``region`` is the one already known, if any."""
    voc = vocabulary()
    norm = _EMOJI.sub(" ", normalize(text))
    mentions, impossible = dates.find(norm, today)
    # Dates and ID numbers are read; what is left is searched for words.
    words = norm
    spans = [(m.start, m.end) for m in mentions] + [(i.start, i.end) for i in impossible]
    for start, end in sorted(spans, reverse=True):
        words = words[:start] + " " * (end - start) + words[end:]
    words = dates.arabic(words)
    if not _has_words(words):
        # Dates (or an ID number) and nothing else, the commonest answer: every word search
        # below would find nothing (tests/test_understanding.py checks the two agree).
        return _dates_only(norm, mentions, impossible, step, today, library, voc)

    found = library.regions_in(words, near=False)
    typo = unsure = False
    if not found:
        found = library.regions_in(words)
        typo = bool(found)
    if not found:
        found = region_guesses(words, library)
        unsure = bool(found)
    in_region = found[0] if len(found) == 1 and not unsure else region

    expanded = _expand(words, voc)
    newborn = _any(words, voc["newborn"])
    child = newborn or _any(words, voc["child"])
    student = _any(words, voc["student"])
    if student:
        expanded += " 学生"
    categories: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    group_words: tuple[str, ...] = ()
    if in_region is not None:
        known = library.categories(in_region)
        categories = tuple(match_categories(known, expanded))
        choices = tuple(_ambiguous(known, words, voc, categories))
    else:
        ambiguous = [w for w in voc["ambiguous"] if _has(words, w)]
        group_words = tuple(_group_words(library, expanded)) or tuple(ambiguous)

    birth, payment = _roles(norm, mentions, step, today, child, _first_payment_day(library))
    tier = _tier(expanded, library, in_region, voc)
    question = _question(norm, voc)
    quote_intent = question and _any(norm, voc["quote_intent"])
    if question and not quote_intent and not _IDENTITY.search(norm):
        # "啥是监测对象？", "低保能减多少？": the group is what is asked about, not an answer.
        categories, choices, group_words = (), (), ()
    none = _any(words, voc["none_of_these"]) and not categories
    understood = found or categories or choices or group_words or mentions or tier or none
    nav = None if understood or impossible else _navigation(words, voc)
    if nav == "none":
        nav, none = None, True
    return Understanding(
        regions=tuple(found),
        region_typo=typo,
        region_unsure=unsure,
        birth=birth,
        payment=payment,
        id_number=bool(birth and birth.id_number),
        bad_id=any(i.id_number for i in impossible),
        bad_date=any(not i.id_number for i in impossible),
        categories=categories,
        category_choices=choices,
        category_words=group_words,
        none_of_these=none,
        tier=tier,
        newborn=newborn,
        child=child,
        student=student,
        nav=nav,
        question=question,
        quote_intent=quote_intent,
    )


def _has_words(words: str) -> bool:
    return not words.isspace() and words != ""


def _dates_only(
    norm: str,
    mentions: list[dates.Mention],
    impossible: list[dates.Impossible],
    step: Step,
    today: dt.date,
    library: Library,
    voc: dict[str, Any],
) -> Understanding:
    birth, payment = _roles(norm, mentions, step, today, False, _first_payment_day(library))
    question = _question(norm, voc)
    return Understanding(
        birth=birth,
        payment=payment,
        id_number=bool(birth and birth.id_number),
        bad_id=any(i.id_number for i in impossible),
        bad_date=any(not i.id_number for i in impossible),
        question=question,
        quote_intent=question and _any(norm, voc["quote_intent"]),
    )


def region_guesses(text: str, library: Library) -> list[str]:
    """Library.region_guesses on what is left once the words the bot knows are taken out:
    "商落低保户交多少" leaves 商落 (商洛?), "普通居民" leaves nothing (not 通河)."""
    return library.region_guesses(_known_words(library).sub(" ", normalize(text)))


_KNOWN: dict[int, tuple[Library, re.Pattern[str]]] = {}  # per library (not hashable)


def _known_words(library: Library) -> re.Pattern[str]:
    cached = _KNOWN.get(id(library))
    if cached is None or cached[0] is not library:
        cached = _KNOWN[id(library)] = (library, _known_words_of(library))
    return cached[1]


def _known_words_of(library: Library) -> re.Pattern[str]:
    voc = vocabulary()
    words: set[str] = set()
    for value in voc.values():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, listed in items:
            words.update(str(w) for w in ([key] if isinstance(key, str) else []) + list(listed))
    for notice in library.notices:
        for cat in notice.categories:
            words.update((cat.name, *cat.aliases))
    ordered = sorted({_word(w) for w in words if len(_word(w)) >= 2}, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in ordered))


# -- words ----------------------------------------------------------------------------------


def _expand(text: str, voc: dict[str, Any]) -> str:
    """The text with the Chinese word of every everyday or English term found appended."""
    extra = [zh for zh, words in voc["terms"].items() if _any(text, words)]
    return " ".join([text, *extra])


def match_categories(categories: list[Category], text: str) -> list[str]:
    """Ids of the categories whose name or alias occurs in the text, longest match wins."""
    text = normalize(text)
    hits: list[tuple[int, str, str]] = []
    for cat in categories:
        for alias in (cat.name, *cat.aliases):
            alias = _word(alias)
            if len(alias) >= 2 and alias in text and not _negated(text, alias):
                hits.append((len(alias), alias, cat.id))
    hits.sort(reverse=True)
    found: list[str] = []
    covered: list[str] = []
    for _, alias, cid in hits:
        if cid in found or any(alias in longer for longer in covered):
            continue  # "低保" inside "低保边缘户" is not a second category
        found.append(cid)
        covered.append(alias)
    return found


def _negated(text: str, alias: str) -> bool:
    """ "不是低保" names 低保 to say the opposite."""
    at = text.find(alias)
    before = text[max(0, at - 4) : at]
    return at > 0 and re.search(r"(不是|不属于|没有|非|not|no)\s*$", before) is not None


def _ambiguous(
    known: list[Category], text: str, voc: dict[str, Any], matched: tuple[str, ...]
) -> list[str]:
    if matched:
        return []
    options: list[str] = []
    for word, meanings in voc["ambiguous"].items():
        if _has(text, word):
            for meaning in meanings:
                options += [c for c in match_categories(known, meaning) if c not in options]
    return options


def _group_words(library: Library, text: str) -> list[str]:
    """Category words of any notice found in the text (the region is not known yet)."""
    words: set[str] = set()
    for notice in library.regions():
        for cat in notice.categories:
            for alias in (cat.name, *cat.aliases):
                alias = _word(alias)
                if len(alias) >= 2 and alias in text and not _negated(text, alias):
                    words.add(alias)
    # "低保" inside "低保边缘户" is one word
    return sorted(w for w in words if not any(w != o and w in o for o in words))


def _tier(text: str, library: Library, region: str | None, voc: dict[str, Any]) -> int | None:
    notice = library.latest(region) if region else None
    tiers = list(notice.tiers or []) if notice else []
    if region is not None and not tiers:
        return None
    named = {t.id for t in tiers if _word(t.name) in text}
    named |= {t.id for t in tiers if re.search(rf"(?<!\d){t.fee}(?!\d)", text)}  # "350的那个"
    named |= {int(n) for n, words in voc["tiers"].items() if _any(text, words)}
    return named.pop() if len(named) == 1 else None  # "一档二档有啥区别" names no choice


def _navigation(text: str, voc: dict[str, Any]) -> Nav | None:
    """The navigation a message is, when it is little else than navigation words."""
    rest = _FILLER.sub("", text)
    if not rest or len(rest) > 24:
        return None
    best: tuple[int, Nav] | None = None
    for intent, words in voc["navigation"].items():
        for word in words:
            w = _FILLER.sub("", _word(word))
            if not w or w not in rest or (len(w) < 2 and w != rest):
                continue
            if len(rest) - len(w) <= (2 if w.isascii() else 4) and (
                best is None or len(w) > best[0]
            ):
                best = (len(w), intent)
    return best[1] if best else None


def _question(text: str, voc: dict[str, Any]) -> bool:
    if any(_word(w) in text for w in voc["question_marks"]):
        return True
    if _WHAT_IF.search(text.strip()) and _WHAT_IF_START.match(text):
        return True
    first = re.match(r"\s*([a-z']+(?:\s+[a-z']+)?)", text)
    return bool(first) and any(
        first.group(1) == w or first.group(1).startswith(w + " ")  # type: ignore[union-attr]
        for w in voc["question_words_en"]
    )


# -- dates ----------------------------------------------------------------------------------


def _first_payment_day(library: Library) -> dt.date:
    """A year before the first window any notice opens: no payment is dated before it."""
    days = [d for d in library.opening_days() if d is not None]
    return min(days, default=dt.date(1900, 1, 1)) - dt.timedelta(days=366)


def _roles(
    text: str, mentions: list[Mention], step: Step, today: dt.date, child: bool, first_pay: dt.date
) -> tuple[Mention | None, Mention | None]:
    """Which mention is the birth date and which the payment date."""
    birth: Mention | None = None
    payment: Mention | None = None
    undecided: list[Mention] = []
    for i, m in enumerate(mentions):
        role = _plausible_role(m, step, today, first_pay) or _role_from_words(
            text, m, len(mentions) == 1
        )
        # "55年的 哦不对 57年": a correction inside the message; the later date stands.
        fix = i > 0 and _CORRECTION.search(text[mentions[i - 1].end : m.start]) is not None
        if role == "birth" and (birth is None or fix):
            birth = m
        elif role == "payment" and (payment is None or fix):
            payment = m
        else:
            undecided.append(m)
    for m in undecided:
        role = _role_from_step(m, step, today, first_pay, birth is not None, payment is not None)
        if role == "birth" and birth is None:
            birth = m
        elif role == "payment" and payment is None:
            payment = m
    if birth is not None and birth.year_missing:
        # A baby's birthday with no year is the last one passed; an adult's needs the year.
        birth = dates.latest_not_after(birth, today) if child else birth
    if payment is not None:
        payment = dates.next_on_or_after(payment, today)
    return birth, payment


def _plausible_role(m: Mention, step: Step, today: dt.date, first_pay: dt.date) -> Role | None:
    """Dates only one role can have: an ID number or an age, a day before any notice could
    take a payment, a day ahead (unless the birth date was asked: then it is a mistake)."""
    if m.id_number or (m.keyword or "").endswith(("岁", "old")):
        return "birth"
    if m.year_missing:
        return None
    if m.last < first_pay:
        return "birth"
    if m.first > today and step != Step.BIRTH:
        return "payment"
    return None


def _role_from_words(text: str, m: Mention, alone: bool) -> Role | None:
    """Whose date it is, by the words right after it, right before it, then in its clause
    (only where it is the message's one date: else the clause's words may be another's)."""
    before, after = _clause_around(text, m)
    for near in (after[:5], before[-5:], *((before + after,) if alone else ())):
        birth, pay = _BIRTH_WORDS.search(near), _PAY_WORDS.search(near)
        if birth and not pay:
            return "birth"
        if pay and not birth:
            return "payment"
    return None


def _clause_around(text: str, m: Mention) -> tuple[str, str]:
    """The text of the mention's clause before it and after it."""
    cuts = list(_CLAUSE.finditer(text))
    start = max([0, *(c.end() for c in cuts if c.end() <= m.start)])
    end = min([len(text), *(c.start() for c in cuts if c.start() >= m.end)])
    return text[start : m.start], text[m.end : end]


def _role_from_step(
    m: Mention, step: Step, today: dt.date, first_pay: dt.date, have_birth: bool, have_payment: bool
) -> Role | None:
    recent = m.last >= first_pay
    if step == Step.BIRTH:
        return "birth"
    if m.relative and m.last >= today:
        return "payment"
    if step == Step.PAYMENT:
        return "payment" if recent or m.year_missing else "birth"
    if not have_birth and not recent:
        return "birth"
    if have_birth and not have_payment and (recent or m.year_missing):
        return "payment"
    return "birth" if not have_birth else None

"""What goes into the engine (an applicant) and what comes out (a quote).

Plain slotted dataclasses rather than pydantic models: the engine builds one quote per call
and must stay cheap (see benchmarks/bench_quotes.py). The classes built on every call
(Step, Quote, ...) are not frozen because frozen dataclasses set each field through
object.__setattr__, which costs a third of a quote; treat them as read-only all the same.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Literal

from policies.text import Msg

# The earliest birth date anyone is quoted for, in the bot and on the command line.
EARLIEST_BIRTH = dt.date(1900, 1, 1)

ErrorKind = Literal[
    "unknown_region",
    "unknown_category",
    "tier_required",
    "unknown_tier",
    "tier_not_offered",
    "birth_after_payment",
]


class ApplicantError(ValueError):
    """The applicant cannot be quoted as given; ``accepted`` lists what would be accepted."""

    def __init__(self, kind: ErrorKind, message: str, accepted: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.accepted = accepted


@dataclass(frozen=True, slots=True)
class Applicant:
    region: str
    birth_date: dt.date
    payment_date: dt.date
    categories: frozenset[str] = frozenset()
    tier: int | None = None
    # Coverage history, asked only where the notice uses it; None: not said.
    years_without_cover: int | None = None  # 断保年数 before the benefit year
    continuous_years: int | None = None  # years of continuous enrolment, this one included
    claim_free_years: int | None = None  # consecutive years without reimbursement


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A citation resolved to its notice file."""

    file: str
    clause: str
    quote: str


@dataclass(slots=True)
class Step:
    """One line of the "why" trace: which figure, what rule, and where it is written."""

    figure: str
    text: str
    source: SourceRef | None


@dataclass(slots=True)
class QuoteNote:
    msg: Msg
    source: SourceRef | None = None
    ask: str | None = None  # the office's name, where the note reports a gap

    @property
    def text(self) -> str:
        """The canonical Chinese (translations: ``conversations.i18n``)."""
        return self.msg.zh()


@dataclass(slots=True)
class PayerShare:
    name: str
    amount: int | None


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    name: str
    kind: str
    how: str | None
    source: SourceRef


@dataclass(slots=True)
class AlternativeQuote:
    label: str
    covers: str
    fee: int | None
    benefit_start: dt.date | None
    benefit_end: dt.date | None
    source: SourceRef


@dataclass(slots=True)
class BenefitLine:
    """One benefit level for this applicant (what cover they get), with its sources."""

    id: str
    name: str
    summary: str
    deductible: int | None
    cap: int | None
    source: SourceRef
    notes: tuple[QuoteNote, ...] = ()  # raises and reductions, each with its clause


@dataclass(slots=True)
class Quote:
    region: str
    region_name: str
    # None where the notice does not say whether this applicant may pay on this date
    # (determined false): the resident is told so and the office to ask, never "no".
    eligible: bool | None
    determined: bool
    notes: tuple[QuoteNote, ...]
    trace: tuple[Step, ...]
    # None: no notice covers the payment date, or the figure is not stated.
    notice: str | None = None
    benefit_year: int | None = None
    window: str | None = None
    window_name: str | None = None
    tier: int | None = None
    fee: int | None = None
    subsidy: int | None = None
    subsidy_category: str | None = None
    subsidy_mode: str | None = None
    payers: tuple[PayerShare, ...] = ()
    pay_now: int | None = None
    net_cost: int | None = None
    benefit_start: dt.date | None = None
    benefit_end: dt.date | None = None
    channels: tuple[ChannelInfo, ...] = ()
    registration: tuple[QuoteNote, ...] = ()
    alternatives: tuple[AlternativeQuote, ...] = ()
    other_notes: tuple[QuoteNote, ...] = ()  # notes whose `when` this applicant does not meet
    # Months of waiting before benefits begin (0: none); set where the rule says.
    waiting_months: int | None = None
    age_group: str | None = None  # the fee group's name where the notice groups by age
    benefits: tuple[BenefitLine, ...] = ()
    # The outcome depends on years without coverage and the applicant has not said them.
    needs_years_without_cover: bool = False
    office: str | None = None  # who to ask where the notice leaves the case undecided

    @property
    def citations(self) -> tuple[SourceRef, ...]:
        seen: dict[SourceRef, None] = {}
        for step in self.trace:
            if step.source is not None:
                seen.setdefault(step.source)
        for note in self.notes:
            if note.source is not None:
                seen.setdefault(note.source)
        return tuple(seen)

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON contract (see README): plain types, dates as ISO strings."""
        data = asdict(self)
        data["citations"] = [asdict(c) for c in self.citations]
        data["notes"] = [n.text for n in self.notes]
        data["note_details"] = [
            {"text": n.text, "source": n.source and asdict(n.source), "ask": n.ask}
            for n in self.notes
        ]
        data["other_notes"] = [n.text for n in self.other_notes]
        data["benefits"] = [
            {
                "id": b.id,
                "name": b.name,
                "summary": b.summary,
                "deductible": b.deductible,
                "cap": b.cap,
                "source": asdict(b.source),
                "notes": [n.text for n in b.notes],
            }
            for b in self.benefits
        ]
        data["registration"] = [
            {"text": r.text, "source": r.source and asdict(r.source)} for r in self.registration
        ]
        return _jsonable(data)  # type: ignore[no-any-return]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value

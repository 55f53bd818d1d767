"""The schema of a notice data file.

Each local notice is one YAML file under ``policies/notices/``. Every value a resident
or staffer can be told carries a ``cite`` (clause + verbatim quote of the notice), so a
reviewer reads the figure and the words it comes from side by side. Unknown keys, wrong
types and missing citations are rejected when the file is loaded; cross-checks that need
the notice's text (quotes occur verbatim, windows tile the calendar, references resolve)
live in ``policies.lint``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]  # ids: ascii, lower case


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Citation(Strict):
    """Where a value comes from: the clause (e.g. ``三（二）``, ``附件2``) and a short quote.

    The quote must occur in the notice's text, ignoring layout whitespace (annex tables
    spread one row over several lines).
    """

    clause: str = Field(min_length=1)
    quote: str = Field(min_length=2)


class Condition(Strict):
    """When a rule applies. All given parts must hold; an empty condition always holds."""

    newborn: bool | None = Field(default=None, description="paid within newborn_days of birth")
    born: Literal["benefit_year", "previous_year"] | None = None
    born_within_days_of_year_end: int | None = Field(
        default=None, description="fewer than N days from birth to 31 Dec of the birth year"
    )
    categories: list[Slug] | None = Field(default=None, description="any one of these")


class Note(Strict):
    """A statement for the resident; ``ask`` names the office to ask where it reports a gap.

    ``when`` limits it to the applicants it concerns (the clause it cites names them): the
    others get it only behind the quote's "other notes" button.
    """

    text: str = Field(min_length=1)
    cite: Citation | None = None
    ask: Slug | None = None
    when: Condition | None = None

    @model_validator(mode="after")
    def _sourced(self) -> Note:
        if self.cite is None and self.ask is None:
            raise ValueError("a note needs a cite, or an office to ask (ask) when it reports a gap")
        return self


class Office(Strict):
    id: Slug
    name: str
    duties: str
    cite: Citation


class Place(Strict):
    """Names residents use for the region: its towns and villages, or the city around it.

    Either the notice lists them (``cite``), or they are public administrative divisions
    (``source`` says where from); they only route a message to this notice.
    """

    names: list[str] = Field(min_length=1)
    cite: Citation | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _sourced(self) -> Place:
        if (self.cite is None) == (self.source is None):
            raise ValueError("a place list needs a cite (the notice lists it) or a source")
        return self


class Region(Strict):
    id: Slug
    name: str = Field(description="as the notice writes it, e.g. 凤山街道")
    full_name: str
    aliases: list[str] = Field(min_length=1)  # other names, pinyin and English included
    places: list[Place] = []


class Document(Strict):
    file: str = Field(pattern=r"^[0-9A-Za-z_.-]+\.txt$")
    title: str
    number: str | None = None
    issued_by: str
    issued_on: dt.date | None = None
    cite: Citation


class Amount(Strict):
    amount: int = Field(ge=0)
    cite: Citation


class DatedValue(Strict):
    date: dt.date
    cite: Citation


class Tier(Strict):
    id: int = Field(ge=1)
    name: str
    fee: int = Field(ge=0)
    cite: Citation
    gives: str = Field(description="one line on what this tier gives")
    gives_cite: Citation


class Period(Strict):
    start: dt.date
    end: dt.date
    cite: Citation

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise ValueError("period ends before it starts")
        return self


class Payer(Strict):
    name: str
    amount: int | None = Field(default=None, description="yuan; omitted when it pays it all")
    cite: Citation | None = None


SubsidyKind = Literal["full", "fixed", "percent", "per_tier", "not_stated"]


class Subsidy(Strict):
    """A contribution subsidy (参保资助) for one category.

    ``full`` covers the benefit year's standard personal contribution; ``fixed`` is a yuan
    amount; ``percent`` a share of the standard; ``per_tier`` one amount per tier (Chongqing's
    annex); ``not_stated`` means the notice grants one but gives no figure.
    """

    kind: SubsidyKind
    amount: int | None = Field(default=None, ge=0)
    percent: int | None = Field(default=None, ge=1, le=100)
    per_tier: dict[int, int] | None = None
    mode: Literal["direct", "reimbursed"] = "direct"
    payers: list[Payer] = Field(min_length=1)
    funded_from: str | None = None
    deadline: DatedValue | None = None
    cite: Citation
    notes: list[Note] = []

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Subsidy:
        wanted = {
            "fixed": self.amount is not None,
            "percent": self.percent is not None,
            "per_tier": self.per_tier is not None,
        }
        for kind, present in wanted.items():
            if (self.kind == kind) != present:
                raise ValueError(f"subsidy kind {self.kind!r}: field for {kind!r} is wrong")
        if self.kind == "not_stated" and not any(n.ask for n in self.notes):
            raise ValueError("a subsidy whose figure is not stated needs a note naming who to ask")
        return self


class Category(Strict):
    """An identity or situation the notice treats differently, in the notice's own words."""

    id: Slug
    name: str
    aliases: list[str] = []
    cite: Citation
    confirmed_by: Slug | None = Field(default=None, description="office that confirms it")
    subsidy: Subsidy | None = None
    notes: list[Note] = []


BenefitStart = Literal[
    "benefit_year_start",  # 1 January of the benefit year
    "next_month_first",  # the first day of the month after payment
    "from_birth",
    "from_payment",
    "after_waiting",  # payment date plus waiting_months
    "unspecified",  # the notice does not say: a note with `ask` must explain
]


class Alternative(Strict):
    """A second option the resident may choose instead (商洛市: newborns near 31 Dec)."""

    label: str
    covers: Literal["birth_year", "next_year"]
    cite: Citation


class Rule(Strict):
    when: Condition = Condition()
    enroll: Literal["allowed", "not_allowed", "unknown"] = "allowed"
    benefit_start: BenefitStart | None = None
    waiting_months: int | None = Field(default=None, ge=1)
    fee: int | Literal["standard", "unknown"] = "standard"
    fee_breakdown: str | None = None
    subsidies: bool = Field(default=True, description="whether category subsidies apply")
    subsidies_cite: Citation | None = Field(default=None, description="why they do not")
    alternative: Alternative | None = None
    cite: Citation
    notes: list[Note] = []

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if not self.subsidies and self.subsidies_cite is None:
            raise ValueError("a rule without subsidies must cite why (subsidies_cite)")
        if self.enroll == "allowed" and self.benefit_start is None:
            raise ValueError("an allowed rule needs benefit_start")
        if self.enroll != "allowed" and not self.notes:
            raise ValueError("a rule that does not allow enrolment must say why in notes")
        if (self.benefit_start == "after_waiting") != (self.waiting_months is not None):
            raise ValueError("waiting_months goes with benefit_start: after_waiting")
        gaps = self.benefit_start == "unspecified" or self.enroll == "unknown"
        if (gaps or self.fee == "unknown") and not any(n.ask for n in self.notes):
            raise ValueError("a rule with a gap needs a note naming the office to ask (ask)")
        return self


class Window(Strict):
    """A span of payment dates and the rules for paying in it, first matching rule wins."""

    id: Slug
    name: str
    start: dt.date | None = Field(description="null: from the notice's issue (即日起)")
    earliest: DatedValue | None = Field(
        default=None,
        description="with start null: the earliest payment date the text supports (即日起 has"
        " a beginning even where the notice gives no issue date)",
    )
    end: dt.date
    start_cite: Citation
    end_cite: Citation
    end_stated: bool = Field(
        default=True, description="false: the notice gives no end, `end` is our reading"
    )
    notes: list[Note] = []
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _well_formed(self) -> Window:
        if self.start is not None and self.end < self.start:
            raise ValueError(f"window {self.id} ends before it starts")
        if self.start is not None and self.earliest is not None:
            raise ValueError(f"window {self.id}: earliest goes only with start: null")
        if self.rules[-1].when != Condition():
            raise ValueError(f"window {self.id}: the last rule must apply to everyone (no when)")
        if not self.end_stated and not any(n.ask for n in self.notes):
            raise ValueError(
                f"window {self.id}: an end the notice does not state needs a note (ask)"
            )
        return self


class Channel(Strict):
    name: str
    kind: Literal["online", "offline"]
    how: str | None = Field(default=None, description="menu path or method, as the notice gives")
    cite: Citation


class Registration(Strict):
    when: Condition | None = Field(default=None, description="shown only to these applicants")
    who: str
    where: list[str] = Field(min_length=1)
    bring: list[str] = []
    cite: Citation


class MultipleCategories(Strict):
    rule: Literal["highest", "unspecified"]
    cite: Citation | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _sourced(self) -> MultipleCategories:
        if self.rule == "highest" and self.cite is None:
            raise ValueError("the highest-applies rule needs its citation")
        if self.rule == "unspecified" and (self.note is None or self.note.ask is None):
            raise ValueError("an unspecified rule needs a note naming the office to ask")
        return self


class Fact(Strict):
    """A further fact staff are asked about (reimbursement, deductible, targets, ...)."""

    id: Slug
    topic: str
    text: str
    cite: Citation


class Table(Strict):
    id: Slug
    title: str
    columns: list[str] = Field(min_length=1)
    rows: list[list[str]] = Field(min_length=1)
    cite: Citation

    @model_validator(mode="after")
    def _rectangular(self) -> Table:
        if any(len(r) != len(self.columns) for r in self.rows):
            raise ValueError(f"table {self.id}: every row needs {len(self.columns)} cells")
        return self


class Notice(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*-\d{4}$")  # <region>-<benefit year>
    region: Region
    document: Document
    benefit_year: int = Field(ge=2000, le=2100)
    benefit_period: Period
    eligibility: list[Note] = Field(min_length=1)
    newborn_days: Amount
    fee: Amount | None = None
    tiers: list[Tier] | None = None
    categories: list[Category]
    multiple_categories: MultipleCategories
    windows: list[Window] = Field(min_length=1)
    channels: list[Channel]
    channels_note: Note | None = None
    registration: list[Registration] = []
    refunds: list[Note] = []
    offices: list[Office] = Field(min_length=1)
    ask_office: Slug = Field(description="the office to ask when the notice is silent")
    newborn_beyond_windows: Citation | None = Field(
        default=None,
        description="newborns of the benefit year may register within newborn_days of birth"
        " even after the last window (达拉特旗 三（三）: 不受集中缴费期限制)",
    )
    facts: list[Fact] = []
    tables: list[Table] = []

    @model_validator(mode="after")
    def _fee_or_tiers(self) -> Notice:
        if (self.fee is None) == (self.tiers is None):
            raise ValueError("give exactly one of fee (single standard) or tiers")
        if not self.channels and self.channels_note is None:
            raise ValueError("no channels listed: channels_note must say where to find them")
        return self

    @property
    def window_span(self) -> tuple[dt.date | None, dt.date]:
        first = self.windows[0]
        start = first.start or (first.earliest.date if first.earliest else None)
        return start, self.windows[-1].end

    def category(self, category_id: str) -> Category | None:
        return next((c for c in self.categories if c.id == category_id), None)

    def office(self, office_id: str) -> Office | None:
        return next((o for o in self.offices if o.id == office_id), None)

    def tier(self, tier_id: int) -> Tier | None:
        return next((t for t in self.tiers or [] if t.id == tier_id), None)

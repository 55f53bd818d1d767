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
    without_cover: bool | None = Field(
        default=None,
        description="true: at least one year without coverage before the benefit year (断保);"
        " false: none. An applicant who did not say counts as none",
    )


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


class AgeGroup(Strict):
    """One fee group by age (学生儿童, 劳动年龄内居民, 老年居民), ages counted on a stated day.

    ``from_age`` and ``below_age`` are full years (周岁) on ``AgeGroups.counted_on``;
    ``categories`` put their members in this group whatever their age (在校学生).
    """

    id: Slug
    name: str
    from_age: int = Field(default=0, ge=0)
    below_age: int | None = Field(default=None, ge=1, description="null: no upper bound")
    categories: list[Slug] = []
    fee: int = Field(ge=0)
    cite: Citation

    @model_validator(mode="after")
    def _ordered(self) -> AgeGroup:
        if self.below_age is not None and self.below_age <= self.from_age:
            raise ValueError(f"age group {self.id}: below_age must exceed from_age")
        return self


class AgeGroups(Strict):
    """Fees by age group: the groups tile the ages from 0 up, in order."""

    counted_on: DatedValue = Field(description="the day ages are counted on (年龄计算时点)")
    groups: list[AgeGroup] = Field(min_length=1)

    @property
    def by_age(self) -> list[AgeGroup]:
        """The groups that take ages; a group with categories and no ages takes only those."""
        return [g for g in self.groups if not g.categories or g.from_age or g.below_age]


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
    "after_waiting",  # the rule's waiting period (see Waiting)
    "unspecified",  # the notice does not say: a note with `ask` must explain
]


class Alternative(Strict):
    """A second option the resident may choose instead (商洛市: newborns near 31 Dec)."""

    label: str
    covers: Literal["birth_year", "next_year"]
    cite: Citation


class Waiting(Strict):
    """A waiting period (待遇等待期): ``months`` fixed, counted from ``counted_from``, plus
    ``per_year_without_cover`` months for each year without coverage (断保) before the benefit
    year, the extra capped at ``extra_cap`` and the whole at ``total_cap``.

    ``counted_from`` is the payment day, the first day of the next month, or a day the
    notice states (e.g. 2026-01-01 for payments in the concentrated period). Benefits start
    on that day plus the months (the month's last day where the day number does not exist).
    The rule's ``cite`` is the fixed part; ``extra_cite`` the per-year part.
    """

    months: int = Field(ge=1)
    counted_from: Literal["payment", "next_month_first"] | DatedValue = "payment"
    per_year_without_cover: int = Field(default=0, ge=0)
    extra_cap: int | None = Field(default=None, ge=1)
    total_cap: int | None = Field(default=None, ge=1)
    extra_cite: Citation | None = None

    @model_validator(mode="after")
    def _sourced(self) -> Waiting:
        extra = self.per_year_without_cover > 0
        if extra and self.extra_cite is None:
            raise ValueError("months per year without cover need their citation (extra_cite)")
        if not extra and (self.extra_cap or self.total_cap or self.extra_cite):
            raise ValueError("extra_cap, total_cap and extra_cite go with per_year_without_cover")
        if self.total_cap is not None and self.total_cap < self.months:
            raise ValueError("total_cap is below the fixed months")
        return self

    def months_for(self, years_without_cover: int) -> int:
        extra = self.per_year_without_cover * years_without_cover
        if self.extra_cap is not None:
            extra = min(extra, self.extra_cap)
        total = self.months + extra
        return total if self.total_cap is None else min(total, self.total_cap)


class Rule(Strict):
    when: Condition = Condition()
    enroll: Literal["allowed", "not_allowed", "unknown"] = "allowed"
    benefit_start: BenefitStart | None = None
    waiting: Waiting | None = None
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
        if (self.benefit_start == "after_waiting") != (self.waiting is not None):
            raise ValueError("waiting goes with benefit_start: after_waiting")
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


class CapRaise(Strict):
    """A raise of a benefit's annual cap (连续参保激励 / 零报销激励).

    ``amount`` yuan for each counted year beyond ``after_years`` (连续参保满4年后每多1年:
    after_years 4), at most ``max_total`` in all. ``by`` says which years count: years of
    continuous enrolment including the benefit year, or consecutive claim-free years.
    """

    by: Literal["continuous_years", "claim_free_years"]
    after_years: int = Field(default=0, ge=0)
    amount: int = Field(ge=1)
    max_total: int | None = Field(default=None, ge=1)
    cite: Citation

    def raise_for(self, years: int) -> int:
        total = max(0, years - self.after_years) * self.amount
        return total if self.max_total is None else min(total, self.max_total)


class Reduction(Strict):
    """A lower deductible for some applicants (困难群众起付线降低50%)."""

    when: Condition
    deductible_percent: int = Field(ge=1, le=100, description="share of the deductible taken off")
    text: str = Field(description="what else changes, in the notice's words")
    cite: Citation


class Benefit(Strict):
    """A benefit level the notice states (普通门诊统筹, 大病保险): what cover the person gets.

    ``summary`` says the rates in the notice's words; ``deductible`` (起付线) and ``cap``
    (年度最高支付限额) are yuan, ``cap_per_tier`` where the cap depends on the tier.
    """

    id: Slug
    name: str
    summary: str
    deductible: int | None = Field(default=None, ge=0)
    cap: int | None = Field(default=None, ge=0)
    cap_per_tier: dict[int, int] | None = None
    raises: list[CapRaise] = []
    reductions: list[Reduction] = []
    cite: Citation

    @model_validator(mode="after")
    def _one_cap(self) -> Benefit:
        if self.cap is not None and self.cap_per_tier is not None:
            raise ValueError(f"benefit {self.id}: give cap or cap_per_tier, not both")
        if self.raises and self.cap is None:
            raise ValueError(f"benefit {self.id}: raises need a single cap")
        if self.reductions and self.deductible is None:
            raise ValueError(f"benefit {self.id}: reductions need a deductible")
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
    age_groups: AgeGroups | None = None
    categories: list[Category]
    multiple_categories: MultipleCategories
    windows: list[Window] = Field(min_length=1)
    channels: list[Channel]
    channels_note: Note | None = None
    registration: list[Registration] = []
    refunds: list[Note] = []
    offices: list[Office] = Field(min_length=1)
    ask_office: Slug = Field(description="the office to ask when the notice is silent")
    benefits: list[Benefit] = []
    newborn_beyond_windows: Citation | None = Field(
        default=None,
        description="newborns of the benefit year may register within newborn_days of birth"
        " even after the last window (达拉特旗 三（三）: 不受集中缴费期限制)",
    )
    facts: list[Fact] = []
    tables: list[Table] = []

    @model_validator(mode="after")
    def _fee_or_tiers(self) -> Notice:
        given = [k for k in ("fee", "tiers", "age_groups") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of fee (single standard), tiers or age_groups")
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

    @property
    def standard_fees(self) -> list[int]:
        """Every standard personal contribution the notice states (one per tier or group)."""
        if self.tiers:
            return [t.fee for t in self.tiers]
        if self.age_groups:
            return [g.fee for g in self.age_groups.groups]
        return [self.fee.amount] if self.fee else []

    @property
    def uses_years_without_cover(self) -> bool:
        """Whether any rule depends on years without coverage (the conversation asks it)."""
        return any(
            r.when.without_cover is not None
            or (r.waiting is not None and r.waiting.per_year_without_cover > 0)
            for w in self.windows
            for r in w.rules
        )

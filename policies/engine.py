"""The quote engine: an applicant and the loaded notices in, a quote out.

Pure: no I/O, no clock. Which notice answers is decided by the payment date alone (the
window that covers it); what the resident owes and when benefits begin follows the first
rule of that window whose condition the applicant meets. Every figure carries the
citation of the rule that produced it, collected in the quote's trace.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from policies.loader import Library
from policies.models import (
    AgeGroup,
    Benefit,
    Category,
    Citation,
    Condition,
    Note,
    Notice,
    Rule,
    Tier,
    Window,
)
from policies.quote import (
    AlternativeQuote,
    Applicant,
    ApplicantError,
    BenefitLine,
    ChannelInfo,
    PayerShare,
    Quote,
    QuoteNote,
    SourceRef,
    Step,
)
from policies.text import N_, Msg, Param, Term, Terms, Yuan

# Notices are immutable and live as long as the process, so the pieces of a quote that do
# not depend on the applicant are built once per notice object and reused (the benchmark
# goal of 50,000 quotes/s depends on it). Keys hold the object's id; the value keeps the
# object alive, so an id is never reused for another one while cached.
_refs: dict[int, tuple[Citation, SourceRef]] = {}
_notes: dict[int, tuple[Note, QuoteNote]] = {}


def _ref(notice: Notice, cite: Citation) -> SourceRef:
    hit = _refs.get(id(cite))
    if hit is None:
        hit = _refs[id(cite)] = (cite, SourceRef(notice.document.file, cite.clause, cite.quote))
    return hit[1]


def _note(notice: Notice, note: Note) -> QuoteNote:
    hit = _notes.get(id(note))
    if hit is None:
        office = notice.office(note.ask) if note.ask else None
        resolved = QuoteNote(
            Msg(note.text),
            None if note.cite is None else _ref(notice, note.cite),
            office.name if office else None,
        )
        hit = _notes[id(note)] = (note, resolved)
    return hit[1]


@dataclass(frozen=True)
class _Static:
    """What every quote from one notice shares."""

    notice: Notice
    category_ids: frozenset[str]
    categories: dict[str, tuple[int, Category]]  # id -> (position in the notice, category)
    tiers: dict[int | None, Tier]
    tier_ids: tuple[str, ...]
    channels: tuple[ChannelInfo, ...]
    registration: tuple[tuple[Condition | None, QuoteNote], ...]
    window_steps: dict[str, Step]
    benefit_end_step: Step


_statics: dict[int, _Static] = {}
_steps: dict[tuple[object, ...], Step] = {}


def _cached_step(key: tuple[object, ...], make: Callable[[], Step]) -> Step:
    step = _steps.get(key)
    if step is None:
        step = _steps[key] = make()
    return step


def _static(notice: Notice) -> _Static:
    hit = _statics.get(id(notice))
    if hit is not None:
        return hit
    hit = _statics[id(notice)] = _Static(
        notice=notice,
        category_ids=frozenset(c.id for c in notice.categories),
        categories={c.id: (i, c) for i, c in enumerate(notice.categories)},
        tiers={t.id: t for t in notice.tiers or ()},
        tier_ids=tuple(str(t.id) for t in notice.tiers or ()),
        channels=tuple(
            ChannelInfo(c.name, c.kind, c.how, _ref(notice, c.cite)) for c in notice.channels
        ),
        registration=tuple(
            (
                r.when,
                QuoteNote(
                    Msg(
                        N_("{who}：先到{where}办理参保登记，携带{bring}")
                        if r.bring
                        else N_("{who}：先到{where}办理参保登记"),
                        {"who": Term(r.who), "where": Terms(r.where), "bring": Terms(r.bring)},
                    ),
                    _ref(notice, r.cite),
                ),
            )
            for r in notice.registration
        ),
        window_steps={
            w.id: Step(
                "window",
                f"{notice.document.title}：缴费日期在「{w.name}」"
                f"（{w.start or '发文之日'} 至 {w.end}）内",
                _ref(notice, w.start_cite if w.start is not None else w.end_cite),
            )
            for w in notice.windows
        },
        benefit_end_step=Step(
            "benefit_end",
            f"待遇享受至 {notice.benefit_period.end}",
            _ref(notice, notice.benefit_period.cite),
        ),
    )
    return hit


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day number ``months`` later; the month's last day where that day does not exist."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def first_of_next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def full_years(born: dt.date, on: dt.date) -> int:
    """Age in full years (周岁) on a day."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _raise_msg(by: str, after: int, amount: int, most: int | None) -> Msg:
    values: dict[str, Param] = {"after": after, "amount": Yuan(amount), "most": Yuan(most or 0)}
    if by == "continuous_years":
        text = (
            N_("连续参保满 {after} 年后每多1年，最高支付限额提高 {amount}，累计不超过 {most}")
            if most
            else N_("连续参保满 {after} 年后每多1年，最高支付限额提高 {amount}")
        )
    else:
        text = (
            N_("上一年度未发生报销的，最高支付限额提高 {amount}，连续的逐年累计，不超过 {most}")
            if most
            else N_("上一年度未发生报销的，最高支付限额提高 {amount}，连续的逐年累计")
        )
    return Msg(text, values)


def window_start(window: Window) -> dt.date | None:
    """The first payment date a window takes; for 即日起, the earliest the text supports."""
    if window.start is not None:
        return window.start
    return window.earliest.date if window.earliest is not None else None


def find_window(notices: Iterable[Notice], day: dt.date) -> tuple[Notice, Window] | None:
    for notice in notices:
        for window in notice.windows:
            start = window_start(window)
            if (start is None or start <= day) and day <= window.end:
                return notice, window
    return None


def newborn_carryover(notices: Iterable[Notice], applicant: Applicant) -> Notice | None:
    """The notice whose newborn clause still covers a baby of its year registered after
    its last window (不受集中缴费期限制), within the newborn days."""
    for notice in notices:
        if (
            notice.newborn_beyond_windows is not None
            and applicant.birth_date.year == notice.benefit_year
            and applicant.payment_date > notice.windows[-1].end
            and (applicant.payment_date - applicant.birth_date).days <= notice.newborn_days.amount
        ):
            return notice
    return None


def quote(library: Library, applicant: Applicant) -> Quote:
    notices = library.for_region(applicant.region)
    if not notices:
        ids = tuple(n.region.id for n in library.regions())
        raise ApplicantError(
            "unknown_region", f"未知地区 {applicant.region!r}；可选：{'、'.join(ids)}", ids
        )
    if applicant.birth_date > applicant.payment_date:
        raise ApplicantError(
            "birth_after_payment",
            f"出生日期 {applicant.birth_date} 晚于缴费日期 {applicant.payment_date}；"
            "出生日期须不晚于缴费日期",
        )
    found = find_window(notices, applicant.payment_date)
    carried = newborn_carryover(notices, applicant) if found is None else None
    if carried is not None:
        found = carried, carried.windows[-1]
    _check_categories(notices if found is None else (found[0],), applicant)
    if found is None:
        _check_tier_any(notices, applicant)
        return _not_covered(notices, applicant)
    notice, window = found
    _check_tier(notice, applicant)
    return _Quoter(notice, window, applicant, carried is not None).run()


def _check_categories(notices: Iterable[Notice], applicant: Applicant) -> None:
    known: set[str] = set()
    for notice in notices:
        known |= _static(notice).category_ids
    if applicant.categories <= known:
        return
    unknown = sorted(applicant.categories - known)
    accepted = tuple(sorted(known))
    raise ApplicantError(
        "unknown_category",
        f"地区 {applicant.region} 的通知没有身份类别 {'、'.join(unknown)}；"
        f"可选：{'、'.join(accepted)}",
        accepted,
    )


def _tier_ids(notice: Notice) -> tuple[str, ...]:
    return _static(notice).tier_ids


def _check_tier(notice: Notice, applicant: Applicant) -> None:
    tiers = _tier_ids(notice)
    if not tiers:
        if applicant.tier is not None:
            raise ApplicantError(
                "tier_not_offered", f"{notice.region.name}的通知不分档次，请不要指定档次"
            )
        return
    if applicant.tier is None:
        raise ApplicantError(
            "tier_required", f"{notice.region.name}分档缴费，请指定档次：{'、'.join(tiers)}", tiers
        )
    if str(applicant.tier) not in tiers:
        raise ApplicantError(
            "unknown_tier",
            f"{notice.region.name}没有第 {applicant.tier} 档；可选：{'、'.join(tiers)}",
            tiers,
        )


def _check_tier_any(notices: Iterable[Notice], applicant: Applicant) -> None:
    if applicant.tier is None:
        return
    tiers = tuple(sorted({t for n in notices for t in _tier_ids(n)}))
    if not tiers:
        raise ApplicantError("tier_not_offered", "该地区的通知不分档次，请不要指定档次")
    if str(applicant.tier) not in tiers:
        raise ApplicantError(
            "unknown_tier", f"没有第 {applicant.tier} 档；可选：{'、'.join(tiers)}", tiers
        )


def _not_covered(notices: tuple[Notice, ...], applicant: Applicant) -> Quote:
    latest = max(notices, key=lambda n: n.benefit_year)
    years = sorted(notices, key=lambda n: n.benefit_year)
    office = latest.office(latest.ask_office)
    office_name = office.name if office else ""
    note = QuoteNote(
        Msg(
            N_(
                "{date} 不在已载入的{region}通知所覆盖的缴费期内。已载入：{years}年度（缴费日期"
                " {start} 至 {end}）。其他年度的缴费标准和时间请向{office}咨询。"
            ),
            {
                "date": applicant.payment_date,
                "region": Term(latest.region.name),
                "years": "、".join(str(n.benefit_year) for n in years),
                "start": years[0].window_span[0] or years[0].windows[0].end,
                "end": years[-1].window_span[1],
                "office": Term(office_name),
            },
        ),
        ask=office_name or None,
    )
    return Quote(
        region=latest.region.id,
        region_name=latest.region.name,
        tier=applicant.tier,
        eligible=False,
        determined=True,
        notes=(note,),
        trace=(Step("notice", note.text, None),),  # the CLI's Chinese
    )


def _subsidy_rank(pair: tuple[Category, int | None]) -> tuple[int, bool]:
    # Largest amount first; between equal amounts, paid up front beats 先缴后补.
    cat, amount = pair
    return amount or 0, cat.subsidy is not None and cat.subsidy.mode == "direct"


class _Quoter:
    """One quote's working state; split into steps so each reads beside its rule."""

    def __init__(
        self, notice: Notice, window: Window, applicant: Applicant, carried: bool = False
    ) -> None:
        self.n = notice
        self.w = window
        self.a = applicant
        self.carried = carried  # a newborn registered after the last window (不受…限制)
        self.days_old = (applicant.payment_date - applicant.birth_date).days
        self.trace: list[Step] = []
        self.notes: list[QuoteNote] = []
        self.other_notes: list[QuoteNote] = []  # notes whose condition this applicant misses
        self.without_cover_unknown = False
        self.static = static = _static(notice)
        self.group = self.age_group()
        self.chosen = [static.categories[c][1] for c in applicant.categories]
        if len(self.chosen) > 1:  # notice order, so notes read the same whatever the input order
            self.chosen.sort(key=lambda c: static.categories[c.id][0])

    def ref(self, cite: Citation | None) -> SourceRef | None:
        return None if cite is None else _ref(self.n, cite)

    def note(self, note: Note) -> None:
        if note.when is not None and not self.matches(note.when):
            self.other_notes.append(_note(self.n, note))  # behind the "other notes" button
            return
        self.notes.append(_note(self.n, note))

    def matches(self, cond: Condition) -> bool:
        a, n = self.a, self.n
        if cond.without_cover is not None:
            if a.years_without_cover is None:
                self.without_cover_unknown = True  # the answer could change the outcome
            if cond.without_cover != ((a.years_without_cover or 0) >= 1):
                return False
        if cond.newborn is not None and cond.newborn != (self.days_old <= n.newborn_days.amount):
            return False
        if cond.born == "benefit_year" and a.birth_date.year != n.benefit_year:
            return False
        if cond.born == "previous_year" and a.birth_date.year != n.benefit_year - 1:
            return False
        if cond.born_within_days_of_year_end is not None:
            to_year_end = (dt.date(a.birth_date.year, 12, 31) - a.birth_date).days
            if to_year_end >= cond.born_within_days_of_year_end:
                return False
        return cond.categories is None or not a.categories.isdisjoint(cond.categories)

    def run(self) -> Quote:
        n, w, a = self.n, self.w, self.a
        rule = next(r for r in w.rules if self.matches(r.when))
        static = self.static
        if self.carried:
            self.trace.append(
                Step(
                    "window",
                    f"{n.document.title}：{n.benefit_year}年出生的新生儿出生后"
                    f"{n.newborn_days.amount}天内参保登记，不受集中缴费期限制",
                    self.ref(n.newborn_beyond_windows),
                )
            )
        else:
            self.trace.append(static.window_steps[w.id])
        for wn in w.notes:
            self.note(wn)
        standard = self.standard_fee()
        fee = self.fee(rule, standard)
        subsidy, mode, payers, subsidy_cat = self.subsidy(rule, standard, fee)
        allowed = rule.enroll == "allowed"
        start, end = self.benefit(rule) if allowed else (None, None)
        if allowed and rule.benefit_start != "unspecified" and start is None:
            allowed = False
        # Undecided is not "no": the notice does not say whether this applicant may pay.
        eligible = None if rule.enroll == "unknown" else allowed
        for rn in rule.notes:
            self.note(rn)
        for cat in self.chosen:
            for cn in cat.notes:
                self.note(cn)
        pay_now = net = None
        if allowed and fee is not None and subsidy is not None:
            net = fee - subsidy
            pay_now = fee if mode == "reimbursed" else net
            self.trace.append(
                Step(
                    "pay_now",
                    f"缴费时支付 {pay_now} 元"
                    + (
                        f"，事后补助 {subsidy} 元，实际负担 {net} 元"
                        if mode == "reimbursed"
                        else ""
                    ),
                    None,
                )
            )
        if allowed and pay_now != 0:  # nothing paid, nothing to refund
            for refund in n.refunds:
                self.note(refund)
        if n.channels_note is not None:
            self.note(n.channels_note)
        waiting = rule.waiting
        if waiting is not None and waiting.per_year_without_cover and eligible is not None:
            self.without_cover_unknown |= a.years_without_cover is None
        return Quote(
            region=n.region.id,
            region_name=n.region.name,
            notice=n.id,
            benefit_year=n.benefit_year,
            window=w.id,
            window_name=w.name,
            tier=a.tier,
            eligible=eligible,
            determined=rule.enroll != "unknown",
            fee=fee,
            subsidy=subsidy,
            subsidy_category=subsidy_cat,
            subsidy_mode=mode,
            payers=payers,
            pay_now=pay_now,
            net_cost=net,
            benefit_start=start,
            benefit_end=end,
            channels=static.channels,
            registration=tuple(
                note for when, note in static.registration if when is None or self.matches(when)
            ),
            notes=tuple(self.notes),
            other_notes=tuple(self.other_notes),
            waiting_months=self.waiting_months(rule, allowed, start),
            trace=tuple(self.trace),
            alternatives=self.alternatives(rule),
            age_group=self.group.name if self.group else None,
            benefits=tuple(self.benefit_line(b) for b in n.benefits),
            needs_years_without_cover=self.without_cover_unknown,
            office=self.office() if eligible is None else None,
        )

    def waiting_months(self, rule: Rule, allowed: bool, start: dt.date | None) -> int | None:
        if rule.waiting is not None:  # also when it runs past the year (why one cannot enrol)
            return rule.waiting.months_for(self.a.years_without_cover or 0)
        return 0 if allowed and start is not None else None

    def age_group(self) -> AgeGroup | None:
        """The fee group: by category first (在校学生 whatever their age), else by full years
        of age on the notice's counting day (a baby born after it counts as 0)."""
        groups = self.n.age_groups
        if groups is None:
            return None
        for group in groups.groups:
            if not self.a.categories.isdisjoint(group.categories):
                return group
        age = max(0, full_years(self.a.birth_date, groups.counted_on.date))
        return next(
            g
            for g in groups.by_age
            if g.from_age <= age and (g.below_age is None or age < g.below_age)
        )  # lint checks the groups tile every age

    def benefit_line(self, b: Benefit) -> BenefitLine:
        a = self.a
        notes: list[QuoteNote] = []
        deductible = b.deductible
        for red in b.reductions:
            if deductible is not None and self.matches(red.when):
                deductible -= deductible * red.deductible_percent // 100
                notes.append(QuoteNote(Msg(red.text), self.ref(red.cite)))
        cap = b.cap if b.cap_per_tier is None else b.cap_per_tier.get(a.tier or 0)
        for up in b.raises:
            years = a.continuous_years if up.by == "continuous_years" else a.claim_free_years
            if cap is not None and years is not None:
                cap += up.raise_for(years)
            notes.append(
                QuoteNote(
                    _raise_msg(up.by, up.after_years, up.amount, up.max_total), self.ref(up.cite)
                )
            )
        return BenefitLine(
            b.id, b.name, b.summary, deductible, cap, _ref(self.n, b.cite), tuple(notes)
        )

    def office(self) -> str | None:
        """The office the undecided rule's note names, else the notice's office to ask."""
        named = next((note.ask for note in self.notes if note.ask), None)
        if named is not None:
            return named
        office = self.n.office(self.n.ask_office)
        return office.name if office else None

    def standard_fee(self) -> int:
        if self.n.fee is not None:
            return self.n.fee.amount
        if self.group is not None:
            return self.group.fee
        tier = self.static.tiers.get(self.a.tier)
        assert tier is not None  # checked before quoting
        return tier.fee

    def fee(self, rule: Rule, standard: int) -> int | None:
        key = ("fee", id(rule), self.a.tier, id(self.group))
        self.trace.append(_cached_step(key, lambda: self.fee_step(rule, standard)))
        if rule.fee == "unknown":
            return None
        return standard if rule.fee == "standard" else rule.fee

    def fee_step(self, rule: Rule, standard: int) -> Step:
        if rule.fee == "unknown":
            return Step("fee", "通知未写明本期应缴金额", self.ref(rule.cite))
        if rule.fee == "standard":
            group = self.group
            if group is not None:
                return Step("fee", f"{group.name}个人缴费标准 {group.fee} 元", self.ref(group.cite))
            tier = self.static.tiers.get(self.a.tier)
            if tier is not None:
                return Step("fee", f"{tier.name}个人缴费标准 {tier.fee} 元", self.ref(tier.cite))
            assert self.n.fee is not None
            return Step("fee", f"个人缴费标准 {standard} 元", self.ref(self.n.fee.cite))
        return Step("fee", f"应缴 {rule.fee} 元（{rule.fee_breakdown or ''}）", self.ref(rule.cite))

    def subsidy_amount(self, cat: Category, standard: int, fee: int | None) -> int | None:
        s = cat.subsidy
        assert s is not None
        if s.kind == "full":
            # 全额资助 / 个人不用缴费: whatever the resident would have paid, including a
            # newborn's two-year fee (通河县 三).
            return standard if fee is None else fee
        if s.kind == "fixed":
            return s.amount
        if s.kind == "percent":
            assert s.percent is not None
            return standard * s.percent // 100
        if s.kind == "per_tier":
            assert s.per_tier is not None
            return s.per_tier.get(self.a.tier or 0)
        return None

    def subsidy(
        self, rule: Rule, standard: int, fee: int | None
    ) -> tuple[int | None, str | None, tuple[PayerShare, ...], str | None]:
        subsidised = [c for c in self.chosen if c.subsidy is not None]
        if not subsidised:
            self.trace.append(Step("subsidy", "无参保资助", None))
            return 0, None, (), None
        if not rule.subsidies:
            why = self.ref(rule.subsidies_cite)
            self.notes.append(QuoteNote(Msg(N_("本期缴费不享受参保资助。")), why))
            self.trace.append(Step("subsidy", "本期缴费不享受参保资助", why))
            return 0, None, (), None
        candidates: list[tuple[Category, int | None]] = []
        for cat in subsidised:
            s = cat.subsidy
            assert s is not None
            if s.deadline is not None and self.a.payment_date > s.deadline.date:
                self.notes.append(
                    QuoteNote(
                        Msg(
                            N_(
                                "{category}享受资助的截止时间为 {deadline}，"
                                "{date} 缴费不再享受该资助。"
                            ),
                            {
                                "category": Term(cat.name),
                                "deadline": s.deadline.date,
                                "date": self.a.payment_date,
                            },
                        ),
                        self.ref(s.deadline.cite),
                    )
                )
                continue
            candidates.append((cat, self.subsidy_amount(cat, standard, fee)))
        if not candidates:
            self.trace.append(Step("subsidy", "已过享受资助的截止时间", None))
            return 0, None, (), None
        known = [(c, amt) for c, amt in candidates if amt is not None]
        best = max(known, key=_subsidy_rank) if known else None
        if len(candidates) > 1:
            mc = self.n.multiple_categories
            if mc.rule == "highest":
                self.trace.append(
                    Step("subsidy", "多重身份按就高原则资助，不重复享受", self.ref(mc.cite))
                )
            elif mc.note is not None:
                self.note(mc.note)
        if best is None or (len(known) < len(candidates) and best[1] < standard):
            cat = next(c for c, amt in candidates if amt is None)
            assert cat.subsidy is not None
            for sn in cat.subsidy.notes:
                self.note(sn)
            self.trace.append(
                Step("subsidy", f"{cat.name}：资助金额通知未载明", self.ref(cat.subsidy.cite))
            )
            return None, cat.subsidy.mode, (), cat.id
        cat, amount = best
        s = cat.subsidy
        assert s is not None and amount is not None
        if fee is not None:
            amount = min(amount, fee)
        for sn in s.notes:
            self.note(sn)
        step = _cached_step(("subsidy", id(cat), amount), lambda: self.subsidy_step(cat, amount))
        self.trace.append(step)
        return amount, s.mode, self.payers(cat, amount), cat.id

    @staticmethod
    def payers(cat: Category, amount: int) -> tuple[PayerShare, ...]:
        payers = cat.subsidy.payers if cat.subsidy else []
        sole = len(payers) == 1
        return tuple(
            PayerShare(p.name, amount if p.amount is None and sole else p.amount) for p in payers
        )

    def subsidy_step(self, cat: Category, amount: int) -> Step:
        s = cat.subsidy
        assert s is not None
        who = "、".join(
            p.name + (f" {p.amount} 元" if p.amount is not None else "")
            for p in self.payers(cat, amount)
        )
        how = "先缴后补（先全额缴费，事后补助）" if s.mode == "reimbursed" else "直接抵减个人缴费"
        return Step(
            "subsidy", f"{cat.name}：资助 {amount} 元，由{who}承担，{how}", self.ref(s.cite)
        )

    def benefit(self, rule: Rule) -> tuple[dt.date | None, dt.date | None]:
        a, end = self.a, self.n.benefit_period.end
        kind = rule.benefit_start
        start: dt.date | None
        if kind == "benefit_year_start":
            start, text = self.n.benefit_period.start, "待遇自待遇年度1月1日起"
        elif kind == "next_month_first":
            start, text = first_of_next_month(a.payment_date), "待遇自缴费次月1日起"
        elif kind == "from_birth":
            start, text = a.birth_date, "新生儿待遇自出生之日起"
        elif kind == "from_payment":
            # Also "不设（置）待遇等待期": with no waiting period, cover begins on payment.
            start, text = a.payment_date, "待遇自缴费之日起"
        elif kind == "after_waiting":
            start, text = self.after_waiting(rule)
        else:
            start, text = None, "不设等待期，但通知未写明待遇起始日期"
        self.trace.append(Step("benefit_start", text, self.ref(rule.cite)))
        if start is not None and start > end:
            self.notes.append(
                QuoteNote(
                    Msg(
                        N_(
                            "等待期至 {start} 才结束，已在本待遇年度（至 {end}）之后，"
                            "本年度缴费后无法享受待遇。"
                        ),
                        {"start": start, "end": end},
                    ),
                    self.ref(rule.cite),
                )
            )
            return None, None
        self.trace.append(self.static.benefit_end_step)
        return start, end

    def after_waiting(self, rule: Rule) -> tuple[dt.date, str]:
        w, years = rule.waiting, self.a.years_without_cover
        assert w is not None
        months = w.months_for(years or 0)
        if w.counted_from == "payment":
            base, since = self.a.payment_date, "缴费之日"
        elif w.counted_from == "next_month_first":
            base, since = first_of_next_month(self.a.payment_date), "缴费次月1日"
        else:
            base, since = w.counted_from.date, f"{w.counted_from.date}"
            self.trace.append(
                Step("waiting_from", f"等待期自 {since} 起算", self.ref(w.counted_from.cite))
            )
        if w.per_year_without_cover:
            said = "未填写断保年数，按未断保计算" if years is None else f"断保 {years} 年"
            self.trace.append(
                Step(
                    "waiting_extra",
                    f"{said}：固定等待期 {w.months} 个月，每断保1年增加"
                    f" {w.per_year_without_cover} 个月"
                    + (f"，增加部分最多 {w.extra_cap} 个月" if w.extra_cap else "")
                    + (f"，合计最多 {w.total_cap} 个月" if w.total_cap else ""),
                    self.ref(w.extra_cite),
                )
            )
        text = f"设 {months} 个月等待期，自{since}起满 {months} 个月后享受待遇"
        return add_months(base, months), text

    def alternatives(self, rule: Rule) -> tuple[AlternativeQuote, ...]:
        alt = rule.alternative
        if alt is None:
            return ()
        born = self.a.birth_date
        year = born.year if alt.covers == "birth_year" else born.year + 1
        start = born if alt.covers == "birth_year" else dt.date(year, 1, 1)
        fee = self.standard_fee() if year == self.n.benefit_year else None
        if fee is None:
            office = self.n.office(self.n.ask_office)
            self.notes.append(
                QuoteNote(
                    Msg(
                        N_(
                            "另一选择「{label}」需缴纳 {year} 年度的居民医保费，"
                            "本通知未载明该年度标准，请向{office}咨询。"
                        ),
                        {
                            "label": Term(alt.label),
                            "year": year,
                            "office": Term(office.name if office else ""),
                        },
                    ),
                    self.ref(alt.cite),
                    office.name if office else None,
                )
            )
        return (
            AlternativeQuote(
                alt.label, alt.covers, fee, start, dt.date(year, 12, 31), _ref(self.n, alt.cite)
            ),
        )

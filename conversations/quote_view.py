"""How a quote is shown: a short summary first, the rest behind buttons.

The summary holds what this person needs to act (what to pay and where, by which day, the
subsidy and who pays it, the first and last day of cover, one line for what the notice
leaves open), each figure with its clause mark. "Why", every channel with its menu path,
registration (only where it concerns the applicant), refunds and the other notes are
details, rebuilt from the stored answers when their button is pressed, so an old summary's
buttons answer for the current quote and the state holds nothing more.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace

from conversations import broadcast, timeline
from conversations.context import ASK, EDIT, RESTART, Context, Result
from conversations.render import template_macro
from conversations.state import Button, Reply, State, Step
from policies.engine import quote
from policies.lint import clause_spans
from policies.models import Note, Notice, Registration, Window
from policies.quote import Applicant, ApplicantError, BenefitLine, Quote, QuoteNote
from policies.text import N_

PREFIX = "qd:"  # callback data of the detail buttons: qd:why, qd:pay, ...
SUMMARY_LINES = 8
SUMMARY_CHARS = {"zh_Hans": 300, "zh_Hant": 300}
# English takes 2.7 times the characters of the same Chinese text: the median ratio over
# every case of the full quote before this summary existed (README, "The quote").
ENGLISH_RATIO = 2.7
SUMMARY_CHARS["en"] = int(300 * ENGLISH_RATIO)
_TAGS = re.compile(r"<[^>]+>")

_DETAILS = {
    "why": N_("🔎 依据和原文"),
    "pay": N_("🏦 全部缴费渠道"),
    "reg": N_("📝 参保登记"),
    "notes": N_("📌 退费和其他说明"),
    "offline": N_("📵 没有智能手机"),
    "online": N_("📱 看线上渠道"),
    "pic": N_("📅 时间轴图"),
    "get": N_("🩺 能享受的待遇"),
}


def visible(html: str) -> str:
    """What a reader sees of a reply: the text without its tags."""
    return _TAGS.sub("", html)


def applicant(state: State) -> Applicant:
    assert state.region and state.birth_date and state.payment_date
    return Applicant(
        region=state.region,
        birth_date=state.birth_date,
        payment_date=state.payment_date,
        categories=frozenset(state.categories),
        tier=state.tier,
        years_without_cover=state.years_without_cover,
    )


# -- the summary ------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """What the summary template is given, worked out from the quote and its notice."""

    q: Quote
    payment_date: dt.date
    tier_name: str | None  # the tier, or the age group where the notice groups fees by age
    payers: str
    clause: dict[str, str]  # figure -> clause of the notice it comes from
    standard: int | None  # the personal part when the fee itself is not stated
    channels: tuple[str, ...]  # the one or two that suit this person
    more_channels: bool
    channel_clause: str | None
    channel_office: str | None  # who to ask where the notice lists no channel
    deadline: dt.date | None
    deadline_clause: str | None
    deadline_stated: bool  # false: the notice gives none, the date is our reading
    reasons: tuple[QuoteNote, ...]  # why someone may not enrol
    open_note: QuoteNote | None  # the one gap the summary names, if it fits
    open_count: int  # gaps in all
    open_office: str | None
    benefits: tuple[BenefitLine, ...] = ()  # "what you get" in one line, where it fits


@dataclass(frozen=True)
class Details:
    """What the detail templates are given."""

    q: Quote
    payment_date: dt.date
    document: str
    chosen: list[str]
    tier_name: str | None
    payers: str
    clause: dict[str, str]
    citations: dict[str, list[str]]  # clause -> the notice's words cited from it
    staff: bool
    clauses: dict[str, str]  # staff: the whole text of each clause cited
    channels_note: QuoteNote | None
    registrations: list[Registration]
    refunds: list[QuoteNote]
    notes: list[QuoteNote]


def render_quote(q: Quote, state: State, ctx: Context, offline: bool = False) -> Reply:
    notice = _notice(ctx, q.notice)
    if notice is None:
        return _not_covered(q, state, ctx)
    full = _summary(q, notice, state, ctx, offline)
    # Where it does not fit: the benefit levels left to their button, then the gap counted
    # rather than spelt out (it is under "other notes"), then one channel rather than two
    # (all are under "payment channels").
    short = replace(full, benefits=())
    for summary in (
        full,
        short,
        replace(short, open_note=None),
        replace(short, open_note=None, channels=full.channels[:1], more_channels=True),
    ):
        html = template_macro(ctx.locale, "quote.html.j2", "summary", s=summary)
        if fits(html, ctx.locale):
            break
    return Reply(html=html, buttons=[*_detail_buttons(q, notice, offline, ctx), *_nav(q, ctx)])


def fits(html: str, locale: str) -> bool:
    text = visible(html)
    return len(text.splitlines()) <= SUMMARY_LINES and len(text) <= SUMMARY_CHARS[locale]


def _summary(q: Quote, notice: Notice, state: State, ctx: Context, offline: bool) -> Summary:
    assert state.payment_date is not None
    channels = [c for c in q.channels if c.kind == ("offline" if offline else "online")]
    channels = channels or list(q.channels)
    window = _window(notice, q.window)
    channels_note = _channels_note(notice, q)
    gaps = [n for n in q.notes if n.ask and n is not channels_note and not _is_refund(notice, n)]
    # Spelt out: a gap in this person's own figures (the rule's, the subsidy's); the
    # window's, said to everyone paying then, are only counted.
    own = [n for n in gaps if not _from(n, window.notes if window else [])]
    return Summary(
        q=q,
        payment_date=state.payment_date,
        tier_name=_tier_name(notice, q),
        payers=_payers(q, ctx),
        clause=_clauses(q),
        standard=_standard(notice, q) if q.fee is None else None,
        benefits=q.benefits if q.eligible else (),
        channels=tuple(ctx.loc.term(c.name) for c in channels[:2]),
        more_channels=len(channels) > 2,
        channel_clause=channels[0].source.clause if channels else None,
        channel_office=channels_note.ask if channels_note else None,
        deadline=window.end if window else None,
        deadline_clause=window.end_cite.clause if window else None,
        deadline_stated=window.end_stated if window else True,
        reasons=tuple(q.notes[:2]) if not q.eligible else (),
        open_note=own[0] if own and q.eligible else None,
        open_count=len(gaps) if q.eligible else 0,
        open_office=gaps[0].ask if gaps else None,
    )


def _from(note: QuoteNote, notes: list[Note]) -> bool:
    """Whether the quote's note is one of these data notes."""
    return any(n.text == note.msg.msgid for n in notes)


def _payers(q: Quote, ctx: Context) -> str:
    many = len(q.payers) > 1
    return ctx.loc.terms(
        [
            ctx.loc.term(p.name) + (f" {ctx.loc.money(p.amount)}" if many and p.amount else "")
            for p in q.payers
        ]
    )


def _clauses(q: Quote) -> dict[str, str]:
    return {s.figure: s.source.clause for s in q.trace if s.source is not None}


def _channels_note(notice: Notice, q: Quote) -> QuoteNote | None:
    if notice.channels_note is None:
        return None
    return next((n for n in q.notes if n.msg.msgid == notice.channels_note.text), None)


def _tier_name(notice: Notice, q: Quote) -> str | None:
    tier = notice.tier(q.tier) if q.tier is not None else None
    return tier.name if tier else q.age_group


def _standard(notice: Notice, q: Quote) -> int | None:
    """The standard personal contribution for this person, whatever the fee's shape."""
    tier = notice.tier(q.tier) if q.tier is not None else None
    if tier is not None:
        return tier.fee
    groups = notice.age_groups.groups if notice.age_groups else []
    group = next((g for g in groups if g.name == q.age_group), None)
    if group is not None:
        return group.fee
    return notice.fee.amount if notice.fee else None


def _not_covered(q: Quote, state: State, ctx: Context) -> Reply:
    html = template_macro(
        ctx.locale, "quote.html.j2", "not_covered", q=q, payment_date=state.payment_date
    )
    offer = ctx.gettext(N_("按{year}年度试算（{date}）"))
    rows = [
        [Button(label=offer.format(year=n.benefit_year, date=ctx.loc.date(d)), data=f"pay:{d}")]
        for n in ctx.library.for_region(q.region)
        if (d := _sample_date(n, state.birth_date)) is not None
    ]
    return Reply(html=html, buttons=[*rows, *_nav(q, ctx)])


def _sample_date(notice: Notice, born: dt.date | None) -> dt.date | None:
    """A payment date inside the notice's first window (and not before birth) to offer."""
    window = notice.windows[0]
    day = window.start or window.end
    if born is not None and day < born:
        day = born
    return day if day <= notice.windows[-1].end else None


def _nav(q: Quote, ctx: Context) -> list[list[Button]]:
    name = ctx.loc.term(q.region_name)
    subscribe = Button(
        label=broadcast.say(ctx, "subscribe_label", region=name), data=f"sub:{q.region}"
    )
    return [ctx.nav(EDIT, RESTART), [*ctx.nav(ASK), subscribe]]


def _detail_buttons(q: Quote, notice: Notice, offline: bool, ctx: Context) -> list[list[Button]]:
    """Only the details this person has: no channels when nothing is due, no registration
    unless a registration rule matches, no timeline without a font to draw it."""
    wanted = ["why"]
    due = q.eligible and q.pay_now != 0
    if due and (q.channels or notice.channels_note):
        wanted.append("pay")
    kinds = {c.kind for c in q.channels}
    if due and kinds == {"online", "offline"}:
        wanted.append("online" if offline else "offline")
    if q.registration:
        wanted.append("reg")
    if q.notes or q.other_notes:
        wanted.append("notes")
    if q.benefits:
        wanted.append("get")
    if q.eligible and q.benefit_start is not None and timeline.available():
        wanted.append("pic")
    buttons = [ctx.button(_DETAILS[w], PREFIX + w) for w in wanted]
    return [buttons[i : i + 3] for i in range(0, len(buttons), 3)]


# -- details on request -----------------------------------------------------------------


def on_press(state: State, detail: str, ctx: Context) -> Result:
    """A detail button under the summary (``quoted`` has checked the quote is current)."""
    q = quote(ctx.library, applicant(state))
    notice = _notice(ctx, q.notice)
    assert notice is not None  # buttons are only offered under a quote from a notice
    if detail in ("offline", "online"):
        reply = render_quote(q, state, ctx, offline=detail == "offline")
        reply.edit = True  # the summary changes in place
        return state, [reply]
    if detail == "pic":
        picture = _picture(q, notice, state, ctx)
        picture.buttons = _other_buttons(q, state, ctx, detail)
        return state, [picture]
    assert state.payment_date is not None
    chosen = {c.id: c.name for c in notice.categories}
    details = Details(
        q=q,
        payment_date=state.payment_date,
        document=document_name(notice, ctx),
        chosen=[chosen[c] for c in state.categories if c in chosen],
        tier_name=_tier_name(notice, q),
        payers=_payers(q, ctx),
        clause=_clauses(q),
        citations=_citations(q),
        staff=ctx.staff,
        clauses=_staff_clauses(ctx, notice, q) if ctx.staff else {},
        channels_note=_channels_note(notice, q),
        registrations=_registrations(notice, q),
        refunds=[n for n in q.notes if _is_refund(notice, n)],
        notes=[n for n in q.notes if not _is_refund(notice, n)],
    )
    html = template_macro(ctx.locale, "quote.html.j2", detail, d=details)
    return state, [Reply(html=html, buttons=_other_buttons(q, state, ctx, detail))]


def _other_buttons(q: Quote, state: State, ctx: Context, shown: str) -> list[list[Button]]:
    """Under a detail: the summary's buttons but the one just pressed, so every detail
    stays one press away wherever the reader is (and in the console, which keeps only the
    last message's buttons)."""
    rows = [
        [b for b in row if b.data != PREFIX + shown] for row in render_quote(q, state, ctx).buttons
    ]
    return [row for row in rows if row]


def quoted(state: State, ctx: Context) -> bool:
    """Whether a detail button can still be answered: a quote from a notice is current."""
    if state.step != Step.QUOTED:
        return False
    try:
        return quote(ctx.library, applicant(state)).notice is not None
    except ApplicantError:
        return False


def stale(ctx: Context) -> Reply:
    """An old button pressed after the quote: one short line, not the quote again."""
    return Reply(html=ctx.say("stale_after_quote"), buttons=[ctx.nav(EDIT, RESTART)])


def _citations(q: Quote) -> dict[str, list[str]]:
    """The notice's words per clause, each passage once: a quote inside another quote of
    the same clause (two figures resting on the same sentence) is not repeated."""
    by_clause: dict[str, list[str]] = {}
    for c in q.citations:
        by_clause.setdefault(c.clause, []).append(c.quote)
    return {
        clause: [
            quote
            for i, quote in enumerate(quotes)
            if not any(
                quote in other and (quote != other or j < i)
                for j, other in enumerate(quotes)
                if j != i
            )
        ]
        for clause, quotes in by_clause.items()
    }


def _registrations(notice: Notice, q: Quote) -> list[Registration]:
    shown = {(r.source.clause, r.source.quote) for r in q.registration if r.source}
    whos = {r.msg.params.get("who") for r in q.registration}
    return [
        r for r in notice.registration if (r.cite.clause, r.cite.quote) in shown and r.who in whos
    ]


def _is_refund(notice: Notice, note: QuoteNote) -> bool:
    return _from(note, notice.refunds)


def _picture(q: Quote, notice: Notice, state: State, ctx: Context) -> Reply:
    assert state.payment_date is not None
    spec = timeline.build(q, notice, state.payment_date, ctx.loc)
    caption = ctx.gettext(N_("缴费和待遇时间轴：{region} {year}年度")).format(
        region=ctx.loc.term(q.region_name), year=q.benefit_year
    )
    return Reply(html=caption, photo=spec)


# -- naming the notice ------------------------------------------------------------------


def document_name(notice: Notice, ctx: Context) -> str:
    """The notice by its title and number; staff also get the file it is stored in."""
    doc = notice.document
    title = ctx.loc.term(doc.title)
    name = title
    if doc.number:
        name = ctx.gettext(N_("{title}（{number}）")).format(title=title, number=doc.number)
    if ctx.staff:
        name = ctx.gettext(N_("{name}，文件 {file}")).format(name=name, file=doc.file)
    return name


def clause_text(ctx: Context, notice: Notice, clause: str) -> str | None:
    """The whole clause as the notice writes it (for staff), blank lines closed up."""
    text = ctx.library.texts[notice.document.file]
    spans = clause_spans(text, clause)
    if not spans:
        return None
    lo, hi = spans[0]
    return re.sub(r"\n\s*\n+", "\n", text[lo:hi].strip())[:1500]


def _staff_clauses(ctx: Context, notice: Notice, q: Quote) -> dict[str, str]:
    out: dict[str, str] = {}
    for clause in _citations(q):
        if text := clause_text(ctx, notice, clause):
            out[clause] = text
    return out


# -- lookups ----------------------------------------------------------------------------


def _notice(ctx: Context, notice_id: str | None) -> Notice | None:
    return next((n for n in ctx.library.notices if n.id == notice_id), None)


def _window(notice: Notice, window_id: str | None) -> Window | None:
    return next((w for w in notice.windows if w.id == window_id), None)

"""The resident conversation: region → birth date → categories → tier → payment date → quote.

``handle`` is pure: it takes the stored state, one event and a context (library, clock)
and returns the new state and the replies to show. One function per step, as in
python-telegram-bot's conversationbot example; the step answered decides the next one:
the first question still unanswered, or the quote when none is. So "Back" and "change one
answer" need no bookkeeping of their own: they move to a step whose answer is kept.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import replace

from conversations import broadcast
from conversations.context import ASK, BACK, EDIT, RESTART, Context, Result
from conversations.dates import DateError, parse_date
from conversations.i18n import LANGUAGE_NAMES, LOCALES, negotiate
from conversations.render import render
from conversations.state import (
    QUESTIONS,
    Button,
    Command,
    Event,
    Press,
    Reply,
    State,
    Step,
    Text,
)
from policies.engine import quote
from policies.faq import default_index
from policies.lint import clause_spans
from policies.models import Category, Notice, Tier
from policies.quote import Applicant, ApplicantError, Quote
from policies.text import N_

IDLE_LIMIT = dt.timedelta(minutes=30)
EARLIEST_BIRTH = dt.date(1900, 1, 1)

_DONE_WORDS = ("完成", "好了", "好的", "确定", "就这些", "没有了", "ok", "OK")
_NONE_WORDS = ("以上都不是", "都不是", "没有", "无", "普通", "一般", "不是")
_EDIT_LABELS = {
    Step.REGION: N_("地区"),
    Step.BIRTH: N_("出生日期"),
    Step.CATEGORIES: N_("身份"),
    Step.TIER: N_("档次"),
    Step.PAYMENT: N_("缴费日期"),
}


def handle(state: State, event: Event, ctx: Context) -> Result:
    # A copy the handlers may change: categories is the only mutable answer; the replies
    # saved for a redelivered update are replaced after handling, so they are not copied.
    state = state.model_copy(update={"categories": list(state.categories), "last_replies": []})
    ctx = replace(ctx, locale=state.lang or negotiate(ctx.language_code))
    if _expired(state, ctx) and not isinstance(event, Command):
        if state.step in (Step.QUOTED, Step.FAQ):
            # Nothing half-answered: forget the birth date and identity, and go on with
            # the event (a question is still answered, for the region last asked about).
            state = State(
                step=Step.FAQ if state.step == Step.FAQ else Step.IDLE,
                lang=state.lang,
                faq_region=state.faq_region or state.region,
            )
        else:
            fresh = State(step=Step.REGION, updated_at=ctx.now, lang=state.lang)
            return fresh, [_ask(fresh, ctx, prefix=ctx.say("expired", minutes=30))]
    state, replies = _dispatch(state, event, ctx)
    state.updated_at = ctx.now
    return state, replies


def _expired(state: State, ctx: Context) -> bool:
    return (
        state.step != Step.IDLE
        and state.updated_at is not None
        and ctx.now - state.updated_at > IDLE_LIMIT
    )


def _dispatch(state: State, event: Event, ctx: Context) -> Result:
    if isinstance(event, Command):
        return _on_command(state, event, ctx)
    if isinstance(event, Press):
        if event.data == "restart":
            fresh = State(step=Step.REGION, lang=state.lang)
            return fresh, [_ask(fresh, ctx)]
        if event.data.startswith(broadcast.PREFIXES):
            return broadcast.on_press(state, event, ctx)
        if event.data.startswith("lang:"):
            return _on_language(state, event.data.removeprefix("lang:"), ctx)
        if event.data == "back":
            return _back(state, ctx)
        if event.data == "faq":
            return _on_command(state, Command("faq"), ctx)
        if event.data == "edit" or event.data.startswith("edit:"):
            return _on_edit(state, event, ctx)
        if not event.data.startswith(_BUTTONS.get(state.step, ("\0",))):
            # A button from an earlier question (Telegram keeps old keyboards clickable).
            return state, [_ask(state, ctx, prefix=ctx.say("stale_button"))]
    return _STEP_HANDLERS[state.step](state, event, ctx)


# -- commands and navigation ------------------------------------------------------------


def _on_command(state: State, event: Command, ctx: Context) -> Result:
    if event.name in ("start", "quote"):
        fresh = State(step=Step.REGION, lang=state.lang)
        prefix = ctx.say("welcome") if event.name == "start" else None
        return fresh, [_ask(fresh, ctx, prefix=prefix)]
    if event.name == "cancel":
        return State(lang=state.lang), [Reply(html=ctx.say("cancelled"))]
    if event.name in broadcast.COMMANDS:
        return broadcast.on_command(state, event, ctx)
    if event.name == "lang":
        rows = [[Button(label=LANGUAGE_NAMES[code], data=f"lang:{code}")] for code in LOCALES]
        return state, [Reply(html=ctx.say("choose_language"), buttons=rows)]
    if event.name == "faq":
        state.step = Step.FAQ  # answers given so far are kept; /quote starts a new quote
        return state, [Reply(html=ctx.say("ask_question"), buttons=[ctx.nav(RESTART)])]
    if event.name == "help":
        help_reply = Reply(
            html=render(ctx.locale, "help.html.j2", notices=ctx.library.notices, staff=ctx.staff)
        )
        if state.step in (Step.IDLE, Step.QUOTED, Step.FAQ):
            return state, [help_reply]
        return state, [help_reply, _ask(state, ctx)]
    # Anything else (an unknown command, a sticker or photo): say so, keep the question.
    prefix = ctx.say("nontext" if event.name == "nontext" else "unknown_command")
    if state.step in (Step.IDLE, Step.QUOTED, Step.FAQ):
        return state, [Reply(html=f"{prefix}\n{ctx.say('idle')}")]
    return state, [_ask(state, ctx, prefix=prefix)]


def _on_language(state: State, code: str, ctx: Context) -> Result:
    if code not in LOCALES:
        return state, [_ask(state, ctx, prefix=ctx.say("stale_button"))]
    state.lang = code
    ctx = replace(ctx, locale=code)
    done = ctx.say("language_set")
    if state.step == Step.IDLE:
        reply = Reply(html=f"{done}\n{ctx.say('idle')}")
    else:
        reply = _ask(state, ctx, prefix=done)
    return state, [broadcast.relanguage(reply, ctx)]


def _back(state: State, ctx: Context) -> Result:
    steps = _questions(state, ctx)
    if state.step == Step.QUOTED:
        state.step = steps[-1]
    elif state.step in steps and steps.index(state.step) > 0:
        state.step = steps[steps.index(state.step) - 1]
    elif state.step == Step.IDLE:
        return state, [Reply(html=ctx.say("idle"))]
    return state, [_ask(state, ctx)]


def _on_edit(state: State, event: Press, ctx: Context) -> Result:
    if state.region is None:
        return _back(state, ctx)
    if event.data == "edit":
        buttons = [[ctx.button(_EDIT_LABELS[s], f"edit:{s}")] for s in _questions(state, ctx)]
        return state, [Reply(html=ctx.say("choose_edit"), buttons=[*buttons, ctx.nav(BACK)])]
    target = Step(event.data.removeprefix("edit:"))
    if target not in _questions(state, ctx):
        return state, [_ask(state, ctx)]
    state.step = target
    return state, [_ask(state, ctx)]


def _questions(state: State, ctx: Context) -> list[Step]:
    has_tiers = bool(state.region and _tiers(ctx, state.region))
    return [s for s in QUESTIONS if s != Step.TIER or has_tiers]


def _missing(state: State, ctx: Context) -> Step | None:
    answered = {
        Step.REGION: state.region is not None,
        Step.BIRTH: state.birth_date is not None,
        Step.CATEGORIES: state.categories_done,
        Step.TIER: state.tier is not None,
        Step.PAYMENT: state.payment_date is not None,
    }
    return next((s for s in _questions(state, ctx) if not answered[s]), None)


def _advance(state: State, ctx: Context) -> Result:
    """After an answer: the next unanswered question, or the quote."""
    step = _missing(state, ctx)
    if step is None:
        return _quote(state, ctx)
    state.step = step
    return state, [_ask(state, ctx)]


# -- asking -----------------------------------------------------------------------------


def _ask(state: State, ctx: Context, prefix: str | None = None, edit: bool = False) -> Reply:
    body = _ASKERS[state.step](state, ctx)
    if prefix:
        body = Reply(html=f"{prefix}\n\n{body.html}", buttons=body.buttons)
    if edit:
        body.edit = True
    return body


def _ask_region(state: State, ctx: Context) -> Reply:
    regions = [
        Button(label=ctx.loc.term(n.region.name), data=f"region:{n.region.id}")
        for n in ctx.library.regions()
    ]
    rows = [regions[i : i + 2] for i in range(0, len(regions), 2)]
    return Reply(html=ctx.say("ask_region"), buttons=rows)


def _ask_birth(state: State, ctx: Context) -> Reply:
    html = ctx.say("ask_birth", region_name=_region_name(ctx, state))
    return Reply(html=html, buttons=[ctx.nav(BACK)])


def _ask_categories(state: State, ctx: Context) -> Reply:
    chosen = set(state.categories)
    rows = [
        [Button(label=("✅ " if c.id in chosen else "") + ctx.loc.term(c.name), data=f"cat:{c.id}")]
        for c in _categories(ctx, state)
    ]
    rows.append([ctx.button(N_("以上都不是"), "cat:none"), ctx.button(N_("完成 ✔️"), "cat:done")])
    rows.append(ctx.nav(BACK))
    names = [c.name for c in _categories(ctx, state) if c.id in chosen]
    return Reply(html=ctx.say("ask_categories", chosen=names), buttons=rows)


def _ask_tier(state: State, ctx: Context) -> Reply:
    tiers = _tiers(ctx, state.region or "")
    rows = [
        [Button(label=f"{ctx.loc.term(t.name)} {ctx.loc.money(t.fee)}", data=f"tier:{t.id}")]
        for t in tiers
    ]
    return Reply(html=ctx.say("ask_tier", tiers=tiers), buttons=[*rows, ctx.nav(BACK)])


def _ask_payment(state: State, ctx: Context) -> Reply:
    today = ctx.gettext(N_("今天（{date}）")).format(date=ctx.loc.date(ctx.today))
    return Reply(
        html=ctx.say("ask_payment"),
        buttons=[[Button(label=today, data="pay:today")], ctx.nav(BACK)],
    )


def _ask_quoted(state: State, ctx: Context) -> Reply:
    return _quote(state, ctx)[1][0]


def _ask_faq(state: State, ctx: Context) -> Reply:
    return Reply(html=ctx.say("ask_question"), buttons=[ctx.nav(RESTART)])


def _ask_idle(state: State, ctx: Context) -> Reply:
    return Reply(html=ctx.say("idle"))


# -- answering --------------------------------------------------------------------------


def _on_region(state: State, event: Event, ctx: Context) -> Result:
    region = None
    if isinstance(event, Press) and event.data.startswith("region:"):
        region = event.data.removeprefix("region:")
        if not ctx.library.for_region(region):
            return state, [_ask(state, ctx, prefix=ctx.say("stale_button"))]
    elif isinstance(event, Text):
        region = ctx.library.region_in(event.text)
        if region is None:
            return state, [_ask(state, ctx, prefix=ctx.say("bad_region", text=event.text))]
    else:
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
    if region != state.region:
        # Categories and tiers belong to one region's notices: keep only those still valid.
        valid = {c.id for c in _categories(ctx, State(region=region))}
        state.categories = [c for c in state.categories if c in valid]
        state.categories_done = state.categories_done and bool(state.categories)
        state.tier = None
        state.region = region
    return _advance(state, ctx)


def _on_birth(state: State, event: Event, ctx: Context) -> Result:
    if not isinstance(event, Text):
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
    try:
        born = parse_date(event.text, ctx.today)
    except DateError as err:
        bad = ctx.say("bad_date", text=event.text, reason=err.reason, what="birth")
        return state, [_ask(state, ctx, prefix=bad)]
    if born > ctx.today:
        return state, [_ask(state, ctx, prefix=ctx.say("birth_in_future", day=born))]
    if born < EARLIEST_BIRTH:
        return state, [_ask(state, ctx, prefix=ctx.say("birth_too_early", day=born))]
    if state.payment_date is not None and state.payment_date < born:
        state.payment_date = None  # asked again rather than quoting an impossible pair
    state.birth_date = born
    return _advance(state, ctx)


def _on_categories(state: State, event: Event, ctx: Context) -> Result:
    known = {c.id: c for c in _categories(ctx, state)}
    if isinstance(event, Press):
        value = event.data.removeprefix("cat:")
        if value == "none":
            state.categories, state.categories_done = [], True
            return _advance(state, ctx)
        if value == "done":
            state.categories_done = True
            return _advance(state, ctx)
        if value not in known:
            return state, [_ask(state, ctx, prefix=ctx.say("stale_button"))]
        chosen = set(state.categories) ^ {value}
        state.categories = [c for c in known if c in chosen]
        return state, [_ask(state, ctx, edit=True)]
    if not isinstance(event, Text):
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
    text = event.text.strip()
    found = match_categories(list(known.values()), text)
    if found:
        state.categories = [c for c in known if c in set(state.categories) | set(found)]
        return state, [_ask(state, ctx)]
    if any(w in text for w in _DONE_WORDS) and state.categories:
        state.categories_done = True
        return _advance(state, ctx)
    if any(w in text for w in _NONE_WORDS) or any(w in text for w in _DONE_WORDS):
        state.categories, state.categories_done = [], True
        return _advance(state, ctx)
    return state, [_ask(state, ctx, prefix=ctx.say("bad_category", text=text))]


def _on_tier(state: State, event: Event, ctx: Context) -> Result:
    tiers = _tiers(ctx, state.region or "")
    chosen: Tier | None = None
    if isinstance(event, Press) and event.data.startswith("tier:"):
        chosen = next((t for t in tiers if f"tier:{t.id}" == event.data), None)
    elif isinstance(event, Text):
        text = event.text.strip()
        chosen = next((t for t in tiers if text in (str(t.id), t.name) or t.name in text), None)
    if chosen is None:
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
    state.tier = chosen.id
    return _advance(state, ctx)


def _on_payment(state: State, event: Event, ctx: Context) -> Result:
    if isinstance(event, Press) and event.data.startswith("pay:"):
        value = event.data.removeprefix("pay:")
        text = "今天" if value == "today" else value
    elif isinstance(event, Text):
        text = event.text
    else:
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
    try:
        paid = parse_date(text, ctx.today)
    except DateError as err:
        bad = ctx.say("bad_date", text=text, reason=err.reason, what="payment")
        return state, [_ask(state, ctx, prefix=bad)]
    if state.birth_date is not None and paid < state.birth_date:
        bad = ctx.say("payment_before_birth", payment=paid, birth=state.birth_date)
        return state, [_ask(state, ctx, prefix=bad)]
    state.payment_date = paid
    return _advance(state, ctx)


def _on_quoted(state: State, event: Event, ctx: Context) -> Result:
    if isinstance(event, Press) and event.data.startswith("pay:"):
        return _on_payment(state, event, ctx)  # a date offered by the "not covered" answer
    return _on_faq(state, event, ctx)  # free text after the quote is a question


def _on_idle(state: State, event: Event, ctx: Context) -> Result:
    return _on_faq(state, event, ctx)  # free text outside a conversation step is a question


def _on_faq(state: State, event: Event, ctx: Context) -> Result:
    if isinstance(event, Press) and event.data.startswith("faqregion:"):
        chosen = event.data.removeprefix("faqregion:")
        pending, state.faq_question = state.faq_question, None
        if not pending or not ctx.library.for_region(chosen):
            return state, [Reply(html=ctx.say("ask_question"), buttons=[ctx.nav(RESTART)])]
        state.faq_region = chosen
        return state, [answer_question(pending, chosen, state, ctx)]
    if not isinstance(event, Text) or not event.text.strip():
        return state, [Reply(html=ctx.say("ask_question"), buttons=[ctx.nav(RESTART)])]
    index = default_index()
    question = event.text.strip()
    named = ctx.library.regions_in(question)
    region = named[0] if len(named) == 1 else None
    if not named:
        region = state.faq_region or state.region
    if region is None:
        first = index.search(question)[0]
        if first.kind != "out_of_scope":  # which region's notice answers it? ask
            state.faq_question = question
            rows = [
                [Button(label=ctx.loc.term(n.region.name), data=f"faqregion:{n.region.id}")]
                for n in ctx.library.regions()
                if not named or n.region.id in named  # unsure between a few: those
            ]
            return state, [Reply(html=ctx.say("ask_faq_region"), buttons=rows)]
    state.faq_region = region
    return state, [answer_question(question, region, state, ctx)]


def answer_question(question: str, region: str | None, state: State, ctx: Context) -> Reply:
    answers = default_index().search(question, region)
    best = answers[0]
    # The notice the answer comes from (a region may have several benefit years).
    notice = next((n for n in ctx.library.notices if n.document.file == best.source), None)
    clause_text, table = None, None
    if ctx.staff and notice is not None and best.clause:
        text = ctx.library.texts[notice.document.file]
        spans = clause_spans(text, best.clause)
        if spans:
            lo, hi = spans[0]
            clause_text = re.sub(r"\n\s*\n+", "\n", text[lo:hi].strip())[:1500]
        table = next((t for t in notice.tables if t.cite.clause == best.clause), None)
        if table is not None:
            clause_text = None  # the table says it better than the annex's raw layout
    html = render(
        ctx.locale,
        "faq.html.j2",
        question=question,
        best=best,
        others=[a for a in answers[1:] if a.kind in ("entry", "clause")],
        document=_document(notice, ctx) if notice is not None else "",
        staff=ctx.staff,
        clause_text=clause_text,
        table=table,
    )
    buttons = [ctx.nav(RESTART)]
    if state.step == Step.QUOTED:
        buttons = [ctx.nav(EDIT, RESTART)]
    return Reply(html=html, buttons=buttons)


# -- the quote --------------------------------------------------------------------------


def applicant(state: State) -> Applicant:
    assert state.region and state.birth_date and state.payment_date
    return Applicant(
        region=state.region,
        birth_date=state.birth_date,
        payment_date=state.payment_date,
        categories=frozenset(state.categories),
        tier=state.tier,
    )


def _quote(state: State, ctx: Context) -> Result:
    state.step = Step.QUOTED
    try:
        q = quote(ctx.library, applicant(state))
    except ApplicantError as err:
        # The answers fit the region but not the notice the payment date picked (a later
        # year with other categories or tiers): say so and let the resident change one.
        text = ctx.gettext(
            N_(
                "您的回答与该缴费日期适用的通知不符（例如该年度没有所选的身份或档次），请修改其中一项。"
            )
        )
        return state, [Reply(html=f"{text}（{err.kind}）", buttons=[ctx.nav(EDIT, RESTART)])]
    return state, [render_quote(q, state, ctx)]


def render_quote(q: Quote, state: State, ctx: Context) -> Reply:
    notice = _notice(ctx, q.notice)
    subscribe = Button(
        label=broadcast.say(ctx, "subscribe_label", region=ctx.loc.term(_region_name(ctx, state))),
        data=f"sub:{q.region}",
    )
    buttons = [ctx.nav(EDIT, RESTART), [*ctx.nav(ASK), subscribe]]
    if q.notice is None:
        offer = ctx.gettext(N_("按{year}年度试算（{date}）"))
        buttons = [
            [Button(label=offer.format(year=n.benefit_year, date=ctx.loc.date(d)), data=f"pay:{d}")]
            for n in ctx.library.for_region(q.region)
            if (d := _sample_date(n, state.birth_date)) is not None
        ] + buttons
    names = [c.name for c in _categories(ctx, state) if c.id in state.categories]
    tier = notice.tier(q.tier) if notice is not None and q.tier is not None else None
    many = len(q.payers) > 1
    payers = ctx.loc.terms(
        [
            ctx.loc.term(p.name) + (f" {ctx.loc.money(p.amount)}" if many and p.amount else "")
            for p in q.payers
        ]
    )
    html = render(
        ctx.locale,
        "quote.html.j2",
        q=q,
        payment_date=state.payment_date,
        chosen=names,
        tier_name=tier.name if tier else None,
        payers=payers,
        document=_document(notice, ctx) if notice else "",
        clause={s.figure: s.source.clause for s in q.trace if s.source is not None},
    )
    return Reply(html=html, buttons=buttons)


def _sample_date(notice: Notice, born: dt.date | None) -> dt.date | None:
    """A payment date inside the notice's first window (and not before birth) to offer."""
    window = notice.windows[0]
    day = window.start or window.end
    if born is not None and day < born:
        day = born
    return day if day <= notice.windows[-1].end else None


def _document(notice: Notice, ctx: Context) -> str:
    doc = notice.document
    title, file = ctx.loc.term(doc.title), doc.file
    if doc.number:
        return ctx.gettext(N_("{title}（{number}），文件 {file}")).format(
            title=title, number=doc.number, file=file
        )
    return ctx.gettext(N_("{title}，文件 {file}")).format(title=title, file=file)


# -- matching what people type ----------------------------------------------------------


def match_categories(categories: list[Category], text: str) -> list[str]:
    """Ids of the categories whose name or alias occurs in the text, longest match wins."""
    hits: list[tuple[int, str, str]] = []
    for cat in categories:
        for alias in (cat.name, *cat.aliases):
            if len(alias) >= 2 and alias in text:
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


# -- lookups ----------------------------------------------------------------------------


def _categories(ctx: Context, state: State) -> list[Category]:
    seen: dict[str, Category] = {}
    for notice in ctx.library.for_region(state.region or ""):
        for cat in notice.categories:
            seen.setdefault(cat.id, cat)
    return list(seen.values())


def _tiers(ctx: Context, region: str) -> list[Tier]:
    notice = ctx.library.latest(region)
    return list(notice.tiers or []) if notice else []


def _region_name(ctx: Context, state: State) -> str:
    notice = ctx.library.latest(state.region or "")
    return notice.region.name if notice else ""


def _notice(ctx: Context, notice_id: str | None) -> Notice | None:
    return next((n for n in ctx.library.notices if n.id == notice_id), None)


# The button prefixes each step answers to (QUOTED: the dates the "not covered" answer offers).
_BUTTONS: dict[Step, tuple[str, ...]] = {
    Step.IDLE: ("faqregion:",),
    Step.REGION: ("region:",),
    Step.CATEGORIES: ("cat:",),
    Step.TIER: ("tier:",),
    Step.PAYMENT: ("pay:",),
    Step.QUOTED: ("pay:", "faqregion:"),
    Step.FAQ: ("faqregion:",),
}

Handler = Callable[[State, Event, Context], Result]
Asker = Callable[[State, Context], Reply]

_STEP_HANDLERS: dict[Step, Handler] = {
    Step.IDLE: _on_idle,
    Step.REGION: _on_region,
    Step.BIRTH: _on_birth,
    Step.CATEGORIES: _on_categories,
    Step.TIER: _on_tier,
    Step.PAYMENT: _on_payment,
    Step.QUOTED: _on_quoted,
    Step.FAQ: _on_faq,
}
_ASKERS: dict[Step, Asker] = {
    Step.IDLE: _ask_idle,
    Step.REGION: _ask_region,
    Step.BIRTH: _ask_birth,
    Step.CATEGORIES: _ask_categories,
    Step.TIER: _ask_tier,
    Step.PAYMENT: _ask_payment,
    Step.QUOTED: _ask_quoted,
    Step.FAQ: _ask_faq,
}

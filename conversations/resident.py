"""The resident conversation: region → birth date → categories → tier → payment date → quote.

``handle`` is pure: it takes the stored state, one event and a context (library, clock)
and returns the new state and the replies to show. One function per step, as in
python-telegram-bot's conversationbot example; the step answered decides the next one:
the first question still unanswered, or the quote when none is. So "Back" and "change one
answer" need no bookkeeping of their own: they move to a step whose answer is kept.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import replace

from conversations import broadcast, callbacks, quote_view
from conversations.context import BACK, EDIT, RESTART, Context, Result
from conversations.coverage import years_without_cover
from conversations.dates import with_year, without_id_numbers
from conversations.faq_view import related
from conversations.i18n import LANGUAGE_NAMES, LOCALES, negotiate
from conversations.quote_view import applicant
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
from conversations.understanding import (
    Understanding,
    match_categories,
    region_guesses,
    understand,
)
from policies.engine import quote
from policies.faq import default_index
from policies.models import Category, Tier
from policies.quote import EARLIEST_BIRTH, ApplicantError
from policies.text import N_

IDLE_LIMIT = dt.timedelta(minutes=30)  # after this, a returning resident is welcomed back
# Characters of a message that are read: understanding and the FAQ run on the event loop
# in time that grows with the text (a 4,096-character message held every chat 0.4 s), and
# no answer needs more.
ANALYSED = 200
_EDIT_LABELS = {
    Step.REGION: N_("地区"),
    Step.BIRTH: N_("出生日期"),
    Step.CATEGORIES: N_("身份"),
    Step.TIER: N_("档次"),
    Step.PAYMENT: N_("缴费日期"),
    Step.COVER: N_("断保年数"),
}


def handle(state: State, event: Event, ctx: Context) -> Result:
    if isinstance(event, Text) and len(event.text) > ANALYSED:
        event = Text(event.text[:ANALYSED])
    # A copy the handlers may change: categories is the only mutable answer.
    state = state.model_copy(update={"categories": list(state.categories)})
    ctx = replace(ctx, locale=state.lang or negotiate(ctx.language_code))
    back_after_a_while = _expired(state, ctx) and state.step in QUESTIONS
    state, replies = _dispatch(state, event, ctx)
    state.updated_at = ctx.now
    if back_after_a_while and replies and state.step in (*QUESTIONS, Step.QUOTED):
        # Answers are kept for the retention period: go on, or start again with one press.
        first = replies[0]
        welcome = ctx.say("welcome_back", facts=_facts(state, ctx))
        replies[0] = Reply(
            html=f"{welcome}\n\n{first.html}",
            buttons=[*first.buttons, ctx.nav(RESTART)],
            edit=first.edit,
            action=first.action,
        )
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
        if callbacks.parse(event.data) is None:  # forged, or from a version long gone
            return state, [_ask(state, ctx, prefix=ctx.say("stale_button"))]
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
        if event.data.startswith(quote_view.PREFIX) and quote_view.quoted(state, ctx):
            return quote_view.on_press(state, event.data.removeprefix(quote_view.PREFIX), ctx)
        if not event.data.startswith(_BUTTONS.get(state.step, ("\0",))):
            # A button from an earlier question (Telegram keeps old keyboards clickable):
            # one short line and the current question, never the whole quote again.
            if state.step == Step.QUOTED:
                return state, [quote_view.stale(ctx)]
            return state, [_ask(state, ctx, prefix=ctx.say("stale_button"))]
    if isinstance(event, Text) and state.step != Step.FAQ and event.text.strip():
        return _on_text(state, event.text, ctx)
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
        # Answers given so far are kept; in the middle of a quote, the question is asked
        # again after the answer. /quote starts a new quote.
        if state.step in QUESTIONS:
            state.resume = state.step
        state.step = Step.FAQ
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
    steps = [s for s in _questions(state, ctx) if s != Step.COVER or _cover_matters(state, ctx)]
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
    skip = {Step.TIER} if not has_tiers else set()
    if not _uses_cover(ctx, state.region):
        skip.add(Step.COVER)
    return [s for s in QUESTIONS if s not in skip]


def _missing(state: State, ctx: Context) -> Step | None:
    answered = {
        Step.REGION: state.region is not None,
        Step.BIRTH: state.birth_date is not None,
        Step.CATEGORIES: state.categories_done,
        Step.TIER: state.tier is not None,
        Step.PAYMENT: state.payment_date is not None,
        Step.COVER: state.years_without_cover is not None,
    }
    for step in _questions(state, ctx):
        # Years without coverage are asked only when they change this person's quote.
        if not answered[step] and (step != Step.COVER or _cover_matters(state, ctx)):
            return step
    return None


def _uses_cover(ctx: Context, region: str | None) -> bool:
    return any(n.uses_years_without_cover for n in ctx.library.for_region(region or ""))


def _cover_matters(state: State, ctx: Context) -> bool:
    """Whether this person's quote changes with years without coverage (a newborn's or a
    payment in the concentrated period by a rule that ignores them does not)."""
    if state.birth_date is None or state.payment_date is None:
        return True
    try:
        return quote(ctx.library, applicant(state)).needs_years_without_cover
    except ApplicantError:
        return False


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
    example = ctx.library.regions()[0].region.name  # whichever notices are loaded
    return Reply(html=ctx.say("ask_region", example=example), buttons=rows)


def _ask_birth(state: State, ctx: Context) -> Reply:
    html = ctx.say("ask_birth", region_name=_region_name(ctx, state), newborn=state.newborn)
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


def _ask_cover(state: State, ctx: Context) -> Reply:
    most = _most_cover_years(ctx, state.region)
    labels = [ctx.gettext(N_("没有断保"))] + [
        ctx.gettext(N_("断保 {years} 年")).format(years=n) for n in range(1, most)
    ]
    labels.append(ctx.gettext(N_("断保 {years} 年及以上")).format(years=most))
    buttons = [Button(label=label, data=f"cover:{n}") for n, label in enumerate(labels)]
    rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    return Reply(html=ctx.say("ask_cover"), buttons=[*rows, ctx.nav(BACK)])


def _most_cover_years(ctx: Context, region: str | None) -> int:
    """The years after which more years change nothing (the caps), at least 1."""
    most = 1
    for notice in ctx.library.for_region(region or ""):
        for window in notice.windows:
            for rule in window.rules:
                w = rule.waiting
                if w is None or not w.per_year_without_cover:
                    continue
                caps = [c for c in (w.extra_cap, w.total_cap and w.total_cap - w.months) if c]
                extra = min(caps) if caps else 6 * w.per_year_without_cover
                most = max(most, -(-extra // w.per_year_without_cover))
    return most


def _ask_quoted(state: State, ctx: Context) -> Reply:
    return _quote(state, ctx)[1][0]


def _ask_faq(state: State, ctx: Context) -> Reply:
    return Reply(html=ctx.say("ask_question"), buttons=[ctx.nav(RESTART)])


def _ask_idle(state: State, ctx: Context) -> Reply:
    return Reply(html=ctx.say("idle"))


# -- answering --------------------------------------------------------------------------


def _on_region(state: State, event: Event, ctx: Context) -> Result:
    if not (isinstance(event, Press) and event.data.startswith("region:")):
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
    region = event.data.removeprefix("region:")
    if not ctx.library.for_region(region):
        return state, [_ask(state, ctx, prefix=ctx.say("stale_button"))]
    _set_region(state, region, ctx)
    if state.faq_question:  # asked before the region was known: answered now
        question, state.faq_question = state.faq_question, None
        state.faq_region = region
        answer = answer_question(question, region, state, ctx)
        state, replies = _advance(state, ctx)
        return state, [answer, *replies]
    return _advance(state, ctx)


def _set_region(state: State, region: str, ctx: Context) -> None:
    if region != state.region:
        # Categories and tiers belong to one region's notices: keep only those still valid.
        valid = {c.id for c in _categories(ctx, State(region=region))}
        state.categories = [c for c in state.categories if c in valid]
        state.categories_done = state.categories_done and bool(state.categories)
        state.tier = None
        state.region = region
    if state.pending_groups:
        found = match_categories(_categories(ctx, state), " ".join(state.pending_groups))
        state.categories = [c.id for c in _categories(ctx, state) if c.id in found]
        state.categories_done = state.categories_done or bool(found)
        state.pending_groups = []


def _on_birth(state: State, event: Event, ctx: Context) -> Result:
    return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]  # typed: _on_text


def _on_categories(state: State, event: Event, ctx: Context) -> Result:
    known = {c.id: c for c in _categories(ctx, state)}
    if not isinstance(event, Press):
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
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


def _on_tier(state: State, event: Event, ctx: Context) -> Result:
    tiers = _tiers(ctx, state.region or "")
    chosen: Tier | None = None
    if isinstance(event, Press) and event.data.startswith("tier:"):
        chosen = next((t for t in tiers if f"tier:{t.id}" == event.data), None)
    if chosen is None:
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
    state.tier = chosen.id
    return _advance(state, ctx)


def _on_cover(state: State, event: Event, ctx: Context) -> Result:
    value = event.data.removeprefix("cover:") if isinstance(event, Press) else ""
    if not value.isdigit():
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
    state.years_without_cover = int(value)
    return _advance(state, ctx)


def _on_payment(state: State, event: Event, ctx: Context) -> Result:
    if not (isinstance(event, Press) and event.data.startswith("pay:")):
        return state, [_ask(state, ctx, prefix=ctx.say("use_buttons"))]
    value = event.data.removeprefix("pay:")
    try:
        paid = ctx.today if value == "today" else dt.date.fromisoformat(value)
    except ValueError:
        return state, [_ask(state, ctx, prefix=ctx.say("stale_button"))]
    problem = _payment_problem(state, paid, ctx)
    if problem:
        return state, [_ask(state, ctx, prefix=problem)]
    state.payment_date, state.payment_from = paid, None
    return _advance(state, ctx)


# -- typed messages: one understanding step for every question ---------------------------


def _on_text(state: State, text: str, ctx: Context) -> Result:
    """Whatever the question, take every answer the message holds, then ask what is left."""
    if state.step == Step.COVER:
        years = years_without_cover(text)
        if years is not None:
            state.years_without_cover = years
            state, replies = _advance(state, ctx)
            said = ctx.say("understood", facts=_facts(state, ctx)[-1:])
            return state, [_prefixed(replies[0], said), *replies[1:]]
    u = understand(text, step=state.step, region=state.region, library=ctx.library, today=ctx.today)
    if u.nav is not None:
        return _navigate(state, u, ctx)
    if u.question and not u.quote_intent and state.step in (Step.IDLE, Step.QUOTED):
        return _on_faq(state, Text(text), ctx)  # a question outside the quote's questions
    if u.answers or u.bad_id or u.bad_date:
        return _take_answers(state, u, text, ctx)
    if u.question:
        return _on_question(state, text, u, ctx)
    if state.step in (Step.IDLE, Step.QUOTED):
        return _on_faq(state, Text(text), ctx)  # free text outside a question is a question
    return state, [_ask(state, ctx, prefix=_not_understood(state, text, ctx))]


def _navigate(state: State, u: Understanding, ctx: Context) -> Result:
    if u.nav == "back":
        return _back(state, ctx)
    if u.nav == "restart":
        fresh = State(step=Step.REGION, lang=state.lang)
        return fresh, [_ask(fresh, ctx)]
    if u.nav == "cancel":
        return _on_command(state, Command("cancel"), ctx)
    if state.step == Step.CATEGORIES:  # done
        return _on_categories(state, Press("cat:done"), ctx)
    return state, [_ask(state, ctx)] if state.step in QUESTIONS else [Reply(html=ctx.say("idle"))]


def _on_question(state: State, text: str, u: Understanding, ctx: Context) -> Result:
    if state.step == Step.IDLE and u.quote_intent:  # "多少钱": the quote answers it
        fresh = State(step=Step.REGION, lang=state.lang)
        return fresh, [_ask(fresh, ctx)]
    if state.step not in QUESTIONS:
        return _on_faq(state, Text(text), ctx)
    if u.quote_intent:  # "要交多少钱" in the middle: the quote these questions lead to
        return state, [_ask(state, ctx, prefix=ctx.say("quote_answers_it"))]
    # A question in the middle of the quote: answered for the region known so far, then
    # the pending question again, every answer kept.
    region = state.region or state.faq_region
    if region is None:
        state.faq_question = text.strip()[:500]
        return state, [_ask(state, ctx, prefix=ctx.say("region_first"))]
    answer = answer_question(text.strip(), region, state, ctx)
    return state, [answer, _ask(state, ctx)]


def _take_answers(state: State, u: Understanding, text: str, ctx: Context) -> Result:
    if state.step == Step.IDLE:  # answers out of the blue start a quote
        state = State(step=Step.REGION, lang=state.lang, faq_region=state.faq_region)
    notes: list[str] = []
    problem = _apply(state, u, text, ctx, notes)
    said = "\n".join([ctx.say("understood", facts=_facts(state, ctx, u)), *notes]).strip()
    if problem is not None:
        return state, [problem if not said else _prefixed(problem, said)]
    state, replies = _advance(state, ctx)
    replies[0] = _prefixed(replies[0], said) if said else replies[0]
    asked = without_id_numbers(text).strip()  # an ID number is never echoed
    question = asked if u.question and not u.quote_intent else state.faq_question
    if question and state.region:  # asked now, or before the region was known
        state.faq_question = None
        replies.insert(0, answer_question(question, state.region, state, ctx))
    return state, replies


def _prefixed(reply: Reply, prefix: str) -> Reply:
    return Reply(html=f"{prefix}\n\n{reply.html}", buttons=reply.buttons, edit=reply.edit)


def _apply(
    state: State, u: Understanding, text: str, ctx: Context, notes: list[str]
) -> Reply | None:
    """Fills the state from the answers; a reply when one of them needs asking again."""
    if len(u.regions) == 1 and not u.region_unsure:
        _set_region(state, u.regions[0], ctx)
        if u.region_typo:
            notes.append(ctx.say("region_guessed", region=_region_name(ctx, state)))
    if u.newborn:
        state.newborn = True
    if u.category_words and state.region is None:
        state.pending_groups = list(u.category_words)
    if u.categories:
        known = [c.id for c in _categories(ctx, state)]
        state.categories = [c for c in known if c in {*state.categories, *u.categories}]
        state.categories_done = True
    elif u.none_of_these:
        state.categories, state.categories_done = [], True
    if u.tier is not None and any(t.id == u.tier for t in _tiers(ctx, state.region or "")):
        state.tier = u.tier
    if u.id_number:
        notes.append(ctx.say("id_not_kept"))
    if u.bad_id:
        state.step = Step.BIRTH if state.region else state.step
        return _ask(state, ctx, prefix=ctx.say("bad_id"))
    problem = _take_birth(state, u, ctx) or _take_payment(state, u, ctx, notes)
    if problem is not None:
        return problem
    if len(u.regions) > 1 or u.region_unsure:  # "内蒙古", "商落…": which notice, then?
        return _choose_region(state, u.regions, ctx)
    if u.category_choices and not u.categories and state.region:
        state.step = Step.CATEGORIES
        rows = [
            [Button(label=ctx.loc.term(c.name), data=f"cat:{c.id}")]
            for c in _categories(ctx, state)
            if c.id in u.category_choices
        ]
        head = ctx.say("category_choices")
        return Reply(html=head, buttons=[*rows, *_ask_categories(state, ctx).buttons[-2:]])
    if u.bad_date and not (u.birth or u.payment):
        what = "payment" if state.step == Step.PAYMENT else "birth"
        if state.step not in (Step.BIRTH, Step.PAYMENT):
            state.step = Step.BIRTH if state.birth_date is None else Step.PAYMENT
        bad = ctx.say("bad_date", text=text.strip(), reason="impossible", what=what)
        return _ask(state, ctx, prefix=bad)
    return None


def _take_birth(state: State, u: Understanding, ctx: Context) -> Reply | None:
    m = u.birth
    if m is None:
        return None
    if m.year_missing:  # "3月5日": whose year?
        if state.birth_date is not None and state.birth_until is not None:
            m = with_year(m, state.birth_date.year)
        else:
            state.birth_month_day = m.first.strftime("%m-%d")
            state.step = Step.BIRTH
            return _ask(state, ctx, prefix=ctx.say("birth_year_missing", day=m.first))
    first, last = m.first, m.last
    if m.precision == "year" and state.birth_month_day and state.birth_until is None:
        month, day = (int(x) for x in state.birth_month_day.split("-"))
        with contextlib.suppress(ValueError):  # 29 February of a year without one
            first = last = dt.date(m.first.year, month, day)
    if first > ctx.today:
        state.step = Step.BIRTH
        return _ask(state, ctx, prefix=ctx.say("birth_in_future", day=first))
    if last < EARLIEST_BIRTH:
        state.step = Step.BIRTH
        return _ask(state, ctx, prefix=ctx.say("birth_too_early", day=first))
    state.birth_date, state.birth_until = first, (min(last, ctx.today) if last != first else None)
    state.birth_month_day = None
    if state.payment_date is not None and state.payment_date < first:
        state.payment_date = state.payment_from = None  # asked again, not quoted impossible
    return None


def _take_payment(state: State, u: Understanding, ctx: Context, notes: list[str]) -> Reply | None:
    m = u.payment
    if m is None:
        return None
    problem = _payment_problem(state, m.last, ctx)
    if problem:
        state.step = Step.PAYMENT
        return _ask(state, ctx, prefix=problem)
    state.payment_date = m.last
    state.payment_from = m.first if not m.exact and not m.relative else None
    if m.relative and not m.exact:
        notes.append(ctx.say("span_latest", words=m.keyword or "", day=m.last))
    return None


def _payment_problem(state: State, paid: dt.date, ctx: Context) -> str | None:
    if state.birth_date is not None and paid < state.birth_date:
        return ctx.say("payment_before_birth", payment=paid, birth=state.birth_date)
    earliest = _earliest_payment(ctx, state.region)
    if earliest is not None and paid < earliest:
        return ctx.say("payment_too_early", payment=paid, earliest=earliest)
    return None


def _earliest_payment(ctx: Context, region: str | None) -> dt.date | None:
    """The first day the region's notices could take a payment; None where a window opens
    "即日起" in a notice that bears no date (the text gives no first day)."""
    days = ctx.library.opening_days(region or "")
    return None if not days or None in days else min(d for d in days if d is not None)


def _choose_region(state: State, regions: tuple[str, ...], ctx: Context) -> Reply:
    """Several regions fit: those as buttons; one guess: it first, then the others."""
    state.step = Step.REGION
    notices = sorted(ctx.library.regions(), key=lambda n: n.region.id not in regions)
    if len(regions) > 1:
        notices = [n for n in notices if n.region.id in regions]
    rows = [
        [Button(label=ctx.loc.term(n.region.name), data=f"region:{n.region.id}")] for n in notices
    ]
    names = [ctx.loc.term(n.region.name) for n in notices if n.region.id in regions]
    return Reply(html=ctx.say("which_region", names=names), buttons=rows)


def _not_understood(state: State, text: str, ctx: Context) -> str:
    if state.step == Step.REGION:
        return ctx.say("bad_region", text=text, names=_region_names(ctx))
    if state.step in (Step.BIRTH, Step.PAYMENT):
        what = "birth" if state.step == Step.BIRTH else "payment"
        return ctx.say("bad_date", text=text, reason="format", what=what)
    if state.step == Step.CATEGORIES:
        return ctx.say("bad_category", text=text)
    if state.step == Step.COVER:
        return ctx.say("bad_cover", text=text)
    return ctx.say("use_buttons")


def _region_names(ctx: Context) -> list[str]:
    return [ctx.loc.term(n.region.name) for n in ctx.library.regions()]


def _facts(state: State, ctx: Context, u: Understanding | None = None) -> list[str]:
    """ "商洛市 · 1956年出生 · 低保对象": what is known (what this message said, with ``u``)."""
    facts: list[str] = []
    if state.region and (u is None or u.regions):
        facts.append(ctx.loc.term(_region_name(ctx, state)))
    if state.birth_date and (u is None or u.birth):
        facts.append(_birth_words(state, ctx))
    if u is None or u.categories or u.none_of_these:
        names = [c.name for c in _categories(ctx, state) if c.id in state.categories]
        if names:
            facts.append(ctx.loc.terms(names))
        elif state.categories_done:
            facts.append(ctx.gettext(N_("不属于所列人群")))
    if state.tier is not None and (u is None or u.tier is not None):
        tier = next((t for t in _tiers(ctx, state.region or "") if t.id == state.tier), None)
        if tier is not None:
            facts.append(ctx.loc.term(tier.name))
    if state.payment_date and (u is None or u.payment):
        facts.append(ctx.gettext(N_("{day}缴费")).format(day=ctx.loc.date(state.payment_date)))
    if state.years_without_cover is not None and u is None:
        years = state.years_without_cover
        facts.append(
            ctx.gettext(N_("断保 {years} 年")).format(years=years)
            if years
            else ctx.gettext(N_("没有断保"))
        )
    if u is not None and u.newborn and not u.birth:
        facts.append(ctx.gettext(N_("新生儿")))
    return facts


def _birth_words(state: State, ctx: Context) -> str:
    born, until = state.birth_date, state.birth_until
    assert born is not None
    if until is None:
        return ctx.gettext(N_("{day}出生")).format(day=ctx.loc.date(born))
    if (born.month, born.day, until.month, until.day) == (1, 1, 12, 31):
        return ctx.gettext(N_("{year}年出生")).format(year=born.year)
    return ctx.gettext(N_("{first}至{last}之间出生")).format(
        first=ctx.loc.date(born), last=ctx.loc.date(until)
    )


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
    if not named:  # a guess ("商落…") is asked about, never answered for
        named = region_guesses(question, ctx.library)
        region = None if named else state.faq_region or state.region
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
    answer = answer_question(question, region, state, ctx)
    if state.resume is not None:  # /faq in the middle of a quote: back to its question
        state.step, state.resume = state.resume, None
        return state, [answer, _ask(state, ctx)]
    return state, [answer]


def answer_question(question: str, region: str | None, state: State, ctx: Context) -> Reply:
    answers = default_index().search(question, region)
    best = answers[0]
    # The notice the answer comes from (a region may have several benefit years).
    notice = next((n for n in ctx.library.notices if n.document.file == best.source), None)
    clause_text, table = None, None
    if ctx.staff and notice is not None and best.clause:
        clause_text = quote_view.clause_text(ctx, notice, best.clause)
        table = next((t for t in notice.tables if t.cite.clause == best.clause), None)
        if table is not None:
            clause_text = None  # the table says it better than the annex's raw layout
    html = render(
        ctx.locale,
        "faq.html.j2",
        question=question,
        best=best,
        others=related(best, answers[1:]),
        document=quote_view.document_name(notice, ctx) if notice is not None else "",
        staff=ctx.staff,
        clause_text=clause_text,
        table=table,
    )
    buttons = [ctx.nav(RESTART)]
    if state.step == Step.QUOTED:
        buttons = [ctx.nav(EDIT, RESTART)]
    unanswered = best.region if best.kind == "none" else None
    return Reply(html=html, buttons=buttons, unanswered=unanswered)


# -- the quote --------------------------------------------------------------------------


def _quote(state: State, ctx: Context) -> Result:
    state.step = Step.QUOTED
    for step, first, last in (
        (Step.BIRTH, state.birth_date, state.birth_until),
        (Step.PAYMENT, state.payment_from, state.payment_date),
    ):
        if first is not None and last is not None and _day_matters(state, step, first, last, ctx):
            state.step = step  # "1956年" or "11月": the day changes the answer, ask it
            return state, [_ask(state, ctx, prefix=ctx.say("day_matters", what=step.value))]
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
    return state, [quote_view.render_quote(q, state, ctx)]


def _day_matters(state: State, step: Step, first: dt.date, last: dt.date, ctx: Context) -> bool:
    """Whether the quote differs between the first and last day a span can mean."""
    field = "birth_date" if step == Step.BIRTH else "payment_date"
    results = []
    for day in (first, last):
        try:
            q = quote(ctx.library, applicant(state.model_copy(update={field: day})))
        except ApplicantError:
            return True
        figures = (q.notice, q.window, q.eligible, q.determined, q.fee, q.subsidy, q.pay_now)
        dates = (q.net_cost, q.benefit_start, q.benefit_end, tuple(n.text for n in q.notes))
        results.append((*figures, *dates))
    return results[0] != results[1]


# -- lookups ----------------------------------------------------------------------------


def _categories(ctx: Context, state: State) -> list[Category]:
    return ctx.library.categories(state.region or "")


def _tiers(ctx: Context, region: str) -> list[Tier]:
    notice = ctx.library.latest(region)
    return list(notice.tiers or []) if notice else []


def _region_name(ctx: Context, state: State) -> str:
    notice = ctx.library.latest(state.region or "")
    return notice.region.name if notice else ""


# The button prefixes each step answers to (QUOTED: the dates the "not covered" answer offers).
_BUTTONS: dict[Step, tuple[str, ...]] = {
    Step.IDLE: ("faqregion:",),
    Step.REGION: ("region:",),
    Step.CATEGORIES: ("cat:",),
    Step.TIER: ("tier:",),
    Step.PAYMENT: ("pay:",),
    Step.COVER: ("cover:",),
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
    Step.COVER: _on_cover,
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
    Step.COVER: _ask_cover,
    Step.QUOTED: _ask_quoted,
    Step.FAQ: _ask_faq,
}

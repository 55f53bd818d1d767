"""Subscriptions (residents) and broadcasts (staff), as conversation steps.

Residents: /subscribe (the region of their quote or last question, else asked with
buttons), /unsubscribe, and the subscribe button under a quote.

Staff (``Context.staff``; everyone else is refused and the attempt audited):
/broadcast → template → region → the announcement exactly as residents will get it, in
the staff member's language (other languages one button away), with the audience per
language → confirm → queued; /broadcast_status with a cancel button per running broadcast;
/reminders switches the scheduled deadline reminders per region.

Pure like the rest of ``conversations``: what needs the database is a reply's ``action``,
which the service does before :func:`complete` fills in the reply from the outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from markupsafe import Markup

from conversations import announcements, callbacks
from conversations.context import Context, Result
from conversations.i18n import LANGUAGE_NAMES, LOCALES
from conversations.render import template_macro
from conversations.state import (
    Audience,
    BroadcastStatus,
    Button,
    CancelBroadcast,
    Command,
    Draft,
    Press,
    QueueBroadcast,
    Refused,
    Relanguage,
    Reminders,
    Reply,
    State,
    Subscribe,
    Unsubscribe,
)
from policies.models import Notice
from policies.text import Msg

RESIDENT_COMMANDS = ("subscribe", "unsubscribe")
STAFF_COMMANDS = ("broadcast", "broadcast_status", "reminders")
COMMANDS = RESIDENT_COMMANDS + STAFF_COMMANDS
# Button data: sub:<region>; bc:t:<template>, bc:r:<region>, bc:l:<locale>, bc:send,
# bc:quit, bc:stop:<id>; rem:on:<region>, rem:off:<region>.
PREFIXES = ("sub:", "bc:", "rem:")
STATUS_SHOWN = 5  # /broadcast_status lists the latest broadcasts


@dataclass(frozen=True, slots=True)
class Progress:
    """A broadcast and how far it got (the store's counts per delivery status)."""

    broadcast_id: int
    status: str  # queued | sending | done | cancelled
    total: int
    pending: int = 0
    inflight: int = 0
    sent: int = 0
    failed: int = 0
    unsubscribed: int = 0
    # What it is and where progress goes; two snapshots are equal when their counts are.
    template: str = field(default="", compare=False)
    region: str = field(default="", compare=False)
    notify_chat: int | None = field(default=None, compare=False)  # the staff chat that sent it
    notify_language: str | None = field(default=None, compare=False)

    @property
    def remaining(self) -> int:
        return self.pending + self.inflight

    @property
    def active(self) -> bool:
        return self.status in ("queued", "sending")


def say(ctx: Context, macro: str, **kwargs: object) -> str:
    return template_macro(ctx.locale, "broadcast.html.j2", macro, **kwargs)


# -- commands -------------------------------------------------------------------------------


def on_command(state: State, event: Command, ctx: Context) -> Result:
    if event.name == "subscribe":
        region = state.region or state.faq_region
        if region is None:
            rows = [
                [Button(label=ctx.loc.term(n.region.name), data=f"sub:{n.region.id}")]
                for n in ctx.library.regions()
            ]
            return state, [Reply(html=say(ctx, "ask_subscribe_region"), buttons=rows)]
        return state, [_subscribe(region, ctx)]
    if event.name == "unsubscribe":
        return state, [Reply(html="", action=Unsubscribe())]
    if not ctx.staff:
        return state, [_refused(event.name, ctx)]
    if event.name == "broadcast":
        state.draft = Draft()
        return state, [_ask_template(ctx)]
    if event.name == "broadcast_status":
        return state, [Reply(html="", action=BroadcastStatus())]
    return state, [Reply(html="", action=Reminders())]  # reminders


def _subscribe(region: str, ctx: Context) -> Reply:
    return Reply(html="", action=Subscribe(region=region, language=ctx.locale))


def _refused(what: str, ctx: Context) -> Reply:
    return Reply(html=say(ctx, "staff_only"), action=Refused(command=what))


def relanguage(reply: Reply, ctx: Context) -> Reply:
    """A reply to /lang: a subscription's announcements follow the new language."""
    return reply.model_copy(update={"action": Relanguage(language=ctx.locale)})


# -- buttons --------------------------------------------------------------------------------


def on_press(state: State, event: Press, ctx: Context) -> Result:
    data = event.data
    if data.startswith("sub:"):
        region = data.removeprefix("sub:")
        if not ctx.library.for_region(region):
            return state, [Reply(html=say(ctx, "ask_subscribe_region"))]
        return state, [_subscribe(region, ctx)]
    if not ctx.staff:
        return state, [_refused(data.split(":")[0], ctx)]
    press = callbacks.parse(data)
    if press is None:
        return state, [Reply(html=say(ctx, "no_draft"))]
    if press.name in ("rem:on", "rem:off"):
        switch = Reminders(region=press.value, enabled=press.name == "rem:on")
        return state, [Reply(html="", action=switch)]
    if press.name == "bc:stop":
        return state, [Reply(html="", action=CancelBroadcast(broadcast_id=press.number))]
    if data == "bc:quit":
        state.draft = None
        return state, [Reply(html=say(ctx, "draft_dropped"))]
    draft = state.draft
    if draft is None:
        return state, [Reply(html=say(ctx, "no_draft"))]
    if data.startswith("bc:t:"):
        template = data.removeprefix("bc:t:")
        if template not in announcements.TEMPLATES:
            return state, [_ask_template(ctx)]
        state.draft = Draft(template=template)
        return state, [_ask_region(template, ctx)]
    if draft.template is None:
        return state, [_ask_template(ctx)]
    if data.startswith("bc:r:"):
        return _on_region(state, draft.template, data.removeprefix("bc:r:"), ctx)
    if draft.region is None or draft.previewed is None:
        return state, [_ask_region(draft.template, ctx)]
    if data.startswith("bc:l:") and data.removeprefix("bc:l:") in LOCALES:
        notice = ctx.library.latest(draft.region)
        if notice is None:
            return state, [_ask_region(draft.template, ctx)]
        return state, _preview(draft.template, notice, data[5:], ctx)
    if data == "bc:send":
        state.draft = None
        action = QueueBroadcast(
            template=draft.template,
            region=draft.region,
            day=ctx.today,
            key=draft.previewed,
        )
        return state, [Reply(html="", action=action)]
    return state, [_ask_template(ctx)]


def _ask_template(ctx: Context) -> Reply:
    rows = [
        [Button(label=ctx.gettext(announcements.TEMPLATE_NAMES[t]), data=f"bc:t:{t}")]
        for t in announcements.TEMPLATES
    ]
    rows.append([_quit_button(ctx)])
    return Reply(html=say(ctx, "ask_template"), buttons=rows)


def _quit_button(ctx: Context) -> Button:
    return Button(label=say(ctx, "quit_label"), data="bc:quit")


def _ask_region(template: str, ctx: Context) -> Reply:
    usable, unusable = [], []
    for notice in ctx.library.regions():
        reason = _unavailable(template, notice, ctx.today)
        if reason is None:
            usable.append(notice)
        else:
            unusable.append((notice.region.name, reason))
    rows = [[Button(label=ctx.loc.term(n.region.name), data=f"bc:r:{n.region.id}")] for n in usable]
    rows.append([_quit_button(ctx)])
    html = say(
        ctx,
        "ask_broadcast_region",
        template=ctx.gettext(announcements.TEMPLATE_NAMES[template]),
        unusable=unusable,
        any_usable=bool(usable),
    )
    return Reply(html=html, buttons=rows)


def _unavailable(template: str, notice: Notice, today: dt.date) -> Msg | None:
    """Why ``template`` cannot be sent for the notice's region today."""
    try:
        announcements.context(template, notice, today)
    except announcements.Unavailable as exc:
        return exc.reason
    return None


def _on_region(state: State, template: str, region: str, ctx: Context) -> Result:
    notice = ctx.library.latest(region)
    if notice is None or _unavailable(template, notice, ctx.today) is not None:
        return state, [_ask_region(template, ctx)]
    state.draft = Draft(template=template, region=region, previewed=ctx.now.isoformat())
    return state, _preview(template, notice, ctx.locale, ctx)


def _preview(template: str, notice: Notice, locale: str, ctx: Context) -> list[Reply]:
    text = announcements.render(template, notice, locale, ctx.today)
    summary = Reply(
        html=locale,  # the language shown; complete() adds the audience
        action=Audience(template=template, region=notice.region.id),
    )
    return [Reply(html=text), summary]


# -- completing replies from the outcome of their action ------------------------------------


def complete(reply: Reply, outcome: object, ctx: Context) -> Reply:
    """The reply once its action is done, ``outcome`` being what the action returned:

    - Subscribe, Relanguage, Refused: nothing (None).
    - Unsubscribe: the region unsubscribed from, or None when there was no subscription.
    - Audience: subscribers per language, ``{locale: count}``.
    - QueueBroadcast: the broadcast's Progress (None: the template no longer applies today).
    - CancelBroadcast: the broadcast's Progress (None: no such broadcast).
    - BroadcastStatus: the latest broadcasts, list[Progress].
    - Reminders: ``{region: enabled}`` for every region, after the switch.
    """
    action = reply.action
    done = reply.model_copy(update={"action": None})
    if action is None or isinstance(action, Relanguage | Refused):
        return done
    handler = _COMPLETERS[action.kind]
    html, buttons = handler(action, outcome, ctx, reply.html)
    return done.model_copy(update={"html": html, "buttons": buttons})


Completed = tuple[str, list[list[Button]]]


def _done_subscribe(action: object, outcome: object, ctx: Context, _: str) -> Completed:
    assert isinstance(action, Subscribe)
    name = _region_name(ctx, action.region)
    return say(ctx, "subscribed", region=name), []


def _done_unsubscribe(action: object, outcome: object, ctx: Context, _: str) -> Completed:
    region = outcome if isinstance(outcome, str) else None
    name = _region_name(ctx, region) if region else None
    return say(ctx, "unsubscribed", region=name), []


def _done_audience(action: object, outcome: object, ctx: Context, shown: str) -> Completed:
    assert isinstance(action, Audience) and isinstance(outcome, Mapping)
    counts = {locale: int(outcome.get(locale, 0)) for locale in LOCALES}
    total = sum(counts.values())
    html = say(
        ctx,
        "audience",
        shown=LANGUAGE_NAMES.get(shown, shown),
        region=_region_name(ctx, action.region),
        total=total,
        counts=[
            say(ctx, "language_count", language=LANGUAGE_NAMES[code], count=n)
            for code, n in counts.items()
            if n
        ],
    )
    others = [
        Button(label=say(ctx, "preview_in", language=LANGUAGE_NAMES[code]), data=f"bc:l:{code}")
        for code in LOCALES
        if code != shown
    ]
    rows = [others]
    if total:
        rows.append([Button(label=say(ctx, "send_label", total=total), data="bc:send")])
    rows.append([_quit_button(ctx)])
    return html, rows


def _done_queue(action: object, outcome: object, ctx: Context, _: str) -> Completed:
    if not isinstance(outcome, Progress):
        return say(ctx, "no_longer_available"), []
    html = say(ctx, "queued", p=outcome, template=_template_name(ctx, outcome.template))
    return html, _cancel_buttons([outcome], ctx)


def _done_cancel(action: object, outcome: object, ctx: Context, _: str) -> Completed:
    assert isinstance(action, CancelBroadcast)
    progress = outcome if isinstance(outcome, Progress) else None
    return say(ctx, "cancelled_broadcast", id=action.broadcast_id, p=progress), []


def _done_status(action: object, outcome: object, ctx: Context, _: str) -> Completed:
    assert isinstance(outcome, list)
    # Each line is already rendered (escaped) HTML: Markup keeps it from being escaped twice.
    html = say(ctx, "status", lines=[Markup(progress_line(p, ctx)) for p in outcome])
    return html, _cancel_buttons(outcome, ctx)


def _done_reminders(action: object, outcome: object, ctx: Context, _: str) -> Completed:
    assert isinstance(outcome, Mapping)
    rows, regions = [], []
    for notice in ctx.library.regions():
        region = notice.region.id
        enabled = bool(outcome.get(region, False))
        upcoming = [
            r for n in ctx.library.for_region(region) for r in announcements.reminder_dates(n)
        ]
        upcoming = [r for r in upcoming if r.on >= ctx.today]
        regions.append((notice.region.name, enabled, upcoming))
        if upcoming or enabled:
            label = say(
                ctx, "reminder_switch", region=ctx.loc.term(notice.region.name), enabled=enabled
            )
            rows.append([Button(label=label, data=f"rem:{'off' if enabled else 'on'}:{region}")])
    return say(ctx, "reminders", regions=regions), rows


def _cancel_buttons(progresses: list[Progress], ctx: Context) -> list[list[Button]]:
    return [
        [
            Button(
                label=say(ctx, "cancel_label", id=p.broadcast_id), data=f"bc:stop:{p.broadcast_id}"
            )
        ]
        for p in progresses
        if p.active
    ]


_COMPLETERS: dict[str, Callable[[object, object, Context, str], Completed]] = {
    "subscribe": _done_subscribe,
    "unsubscribe": _done_unsubscribe,
    "audience": _done_audience,
    "queue": _done_queue,
    "cancel": _done_cancel,
    "status": _done_status,
    "reminders": _done_reminders,
}


# -- texts the bot sends outside a conversation ---------------------------------------------


def progress_line(p: Progress, ctx: Context) -> str:
    return say(
        ctx,
        "progress",
        p=p,
        template=_template_name(ctx, p.template),
        region=_region_name(ctx, p.region) if p.region else "",
    )


def progress_text(p: Progress, ctx: Context) -> str:
    """The progress message the delivery worker sends to the staff chat."""
    return progress_line(p, replace(ctx, locale=p.notify_language or ctx.locale))


def _template_name(ctx: Context, template: str) -> str:
    name = announcements.TEMPLATE_NAMES.get(template)
    return ctx.gettext(name) if name else template


def _region_name(ctx: Context, region: str) -> str:
    notice = ctx.library.latest(region)
    return ctx.loc.term(notice.region.name) if notice else region

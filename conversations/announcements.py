"""Announcements staff broadcast to the residents of a region, filled from the notice data.

Pure functions, no Telegram and no I/O: the delivery core (subscriptions, the paced worker,
the broadcast store) and the bot's /broadcast flow call these. Every figure an announcement
shows comes from the notice's data file and carries its clause; where the data marks the
notice as silent (a note with ``ask``) the announcement says so and names the office to ask.

- ``TEMPLATES``: the announcement ids, one Jinja2 template each in
  ``locales/templates/announcements/<id>.html.j2``.
- ``available(notice)``: per template, ``None`` when the notice supports it, else the
  reason (a translatable ``Msg``).
- ``render(template_id, notice, locale, today=None, days=None)``: Telegram HTML.
- ``reminder_dates(notice)``: 7 days and 1 day before each payment window with a definite
  end, for the scheduled reminders staff switch on per region.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from conversations.render import render as render_template
from policies.models import Category, Condition, Note, Notice, Rule, Subsidy, Window
from policies.text import N_, Msg, Term

TEMPLATES = ("collection_opens", "deadline", "late_payment", "newborn", "subsidy_groups")
TEMPLATE_NAMES = {
    "collection_opens": N_("集中缴费开始"),
    "deadline": N_("缴费截止提醒"),
    "late_payment": N_("补缴及集中期后参保"),
    "newborn": N_("新生儿参保"),
    "subsidy_groups": N_("资助人群及个人缴费"),
}
REMINDER_DAYS = (7, 1)

_BLANK = re.compile(r"\n{3,}")
_DATE = re.compile(r"(?:(\d{4})年)?(\d{1,2})月(\d{1,2})日")


class Unavailable(ValueError):
    """The notice does not support this announcement; ``reason`` says why."""

    def __init__(self, template_id: str, reason: Msg) -> None:
        super().__init__(f"{template_id}: {reason.zh()}")
        self.template_id = template_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reminder:
    """A deadline announcement due ``on`` a day, ``days`` before ``window`` ends on ``end``."""

    on: dt.date
    days: int
    window: str
    end: dt.date
    template: str = "deadline"


# -- reading the notice data -------------------------------------------------------------


def general_rule(window: Window) -> Rule:
    """The rule for everyone (the model requires the last rule to have no condition)."""
    return window.rules[-1]


def definite_end(notice: Notice, window: Window) -> bool:
    """Whether the notice itself states the day the window ends.

    The quote cited for the end must name that day (the year may be left out, as in
    "2023年9月至12月20日"; a different year means another date), and must not merely be the
    benefit period's citation: an end taken from the benefit year (乌拉特前旗's collection
    period, 达拉特旗 after the concentrated period) is our reading, not a deadline.
    """
    if window.end_cite == notice.benefit_period.cite:
        return False
    end = window.end
    for year, month, day in _DATE.findall(window.end_cite.quote):
        same_day = (int(month), int(day)) == (end.month, end.day)
        if same_day and (not year or int(year) == end.year):
            return True
    return False


def deadline_windows(notice: Notice) -> list[Window]:
    """Windows everyone may pay in, whose end the notice states."""
    return [
        w for w in notice.windows if general_rule(w).enroll == "allowed" and definite_end(notice, w)
    ]


def late_windows(notice: Notice) -> list[Window]:
    """Windows after the first in which everyone may still pay (补缴 or late enrolment)."""
    return [w for w in notice.windows[1:] if general_rule(w).enroll == "allowed"]


def newborn_rules(window: Window) -> list[Rule]:
    return [r for r in window.rules if r.when.newborn]


def subsidised(notice: Notice) -> list[Category]:
    return [c for c in notice.categories if c.subsidy is not None]


def reminder_dates(notice: Notice) -> list[Reminder]:
    """7 days and 1 day before the end of each payment window with a definite end."""
    found = []
    for window in deadline_windows(notice):
        for days in REMINDER_DAYS:
            on = window.end - dt.timedelta(days=days)
            if window.start is None or on >= window.start:
                found.append(Reminder(on=on, days=days, window=window.id, end=window.end))
    return sorted(found, key=lambda r: r.on)


def due_reminders(notice: Notice, today: dt.date) -> list[Reminder]:
    """The reminders to send on ``today`` (one a day at most is planned per window)."""
    return [r for r in reminder_dates(notice) if r.on == today]


def available(notice: Notice) -> dict[str, Msg | None]:
    """Per template: ``None`` when the notice supports it, else why not."""
    reasons: dict[str, Msg | None] = dict.fromkeys(TEMPLATES)
    if not deadline_windows(notice):
        reasons["deadline"] = Msg(
            N_("{region}的通知没有写明缴费期在哪一天截止，无法按剩余天数提醒"),
            {"region": Term(notice.region.name)},
        )
    if not late_windows(notice):
        later = notice.windows[1:]
        if not later:
            msgid = N_("{region}的通知只规定了一个缴费期，没有补缴期")
        elif any(general_rule(w).enroll == "unknown" for w in later):
            msgid = N_("{region}的通知没有规定补缴期：集中缴费期后一般人员能否缴费，通知未写明")
        else:
            msgid = N_("{region}的通知规定集中缴费期后一般人员不能再缴费，没有补缴期")
        reasons["late_payment"] = Msg(msgid, {"region": Term(notice.region.name)})
    if not any(newborn_rules(w) for w in notice.windows):
        reasons["newborn"] = Msg(
            N_("{region}的通知没有新生儿参保的专门规定"), {"region": Term(notice.region.name)}
        )
    if not subsidised(notice):
        reasons["subsidy_groups"] = Msg(
            N_("{region}的通知没有规定参保资助人群"), {"region": Term(notice.region.name)}
        )
    return reasons


def last_day(template_id: str, notice: Notice) -> dt.date | None:
    """The last day the announcement's dates speak of (None: the deadline countdown,
    which picks a window still ahead itself)."""
    if template_id == "collection_opens":
        return notice.windows[0].end
    if template_id == "late_payment":
        return max((w.end for w in late_windows(notice)), default=None)
    if template_id == "newborn":
        return max((w.end for w in notice.windows if newborn_rules(w)), default=None)
    if template_id == "subsidy_groups":
        return notice.benefit_period.end
    return None


def stale(template_id: str, notice: Notice, today: dt.date) -> Msg | None:
    """Why the announcement cannot go out on ``today``: every date it gives is past."""
    last = last_day(template_id, notice)
    if last is None or last >= today:
        return None
    return Msg(
        N_("{region}这则公告所说的日期已于{date}过去，不能再发送"),
        {"region": Term(notice.region.name), "date": last},
    )


def supported(notice: Notice) -> list[str]:
    return [t for t, reason in available(notice).items() if reason is None]


# -- what the templates are given ---------------------------------------------------------


def _unique(notes: list[Note]) -> list[Note]:
    seen: set[str] = set()
    kept = []
    for n in notes:
        if n.text not in seen:
            seen.add(n.text)
            kept.append(n)
    return kept


def condition(notice: Notice, when: Condition) -> list[Msg]:
    """The condition of a rule as phrases (newborn, birth year, categories)."""
    parts: list[Msg] = []
    if when.newborn:
        parts.append(Msg(N_("出生{days}天内参保的新生儿"), {"days": notice.newborn_days.amount}))
    if when.born == "benefit_year":
        parts.append(Msg(N_("{year}年出生"), {"year": notice.benefit_year}))
    elif when.born == "previous_year":
        parts.append(Msg(N_("{year}年出生"), {"year": notice.benefit_year - 1}))
    if when.without_cover is not None:
        parts.append(Msg(N_("有断保年份的") if when.without_cover else N_("没有断保的")))
    if when.born_within_days_of_year_end is not None:
        parts.append(
            Msg(
                N_("出生日期距当年12月31日不足{days}天"),
                {"days": when.born_within_days_of_year_end},
            )
        )
    return parts


def _group_subsidies(notice: Notice) -> list[dict[str, Any]]:
    """Categories with the same subsidy shown together, in notice order."""
    groups: list[dict[str, Any]] = []
    for category in subsidised(notice):
        subsidy: Subsidy = category.subsidy  # type: ignore[assignment]
        for group in groups:
            if group["subsidy"] == subsidy and group["confirmed_by"] == category.confirmed_by:
                group["names"].append(category.name)
                break
        else:
            groups.append(
                {
                    "names": [category.name],
                    "subsidy": subsidy,
                    "confirmed_by": category.confirmed_by,
                    "tiers": [
                        (t.name, (subsidy.per_tier or {}).get(t.id)) for t in notice.tiers or []
                    ],
                    "amount": _amount(notice, subsidy),
                    "by_age": _by_age(notice, subsidy),
                }
            )
    return groups


def _amount(notice: Notice, subsidy: Subsidy) -> int | None:
    """The yuan a single-standard subsidy gives (full: the standard; percent: its share)."""
    fee = notice.fee.amount if notice.fee else None
    if subsidy.kind == "fixed":
        return subsidy.amount
    if fee is None:
        return None
    if subsidy.kind == "full":
        return fee
    if subsidy.kind == "percent" and subsidy.percent is not None:
        return fee * subsidy.percent // 100
    return None


def _by_age(notice: Notice, subsidy: Subsidy) -> list[tuple[str, int]]:
    """Where fees go by age group: what a full or percentage subsidy gives in each group."""
    groups = notice.age_groups.groups if notice.age_groups else []
    if subsidy.kind == "full":
        return [(g.name, g.fee) for g in groups]
    if subsidy.kind == "percent" and subsidy.percent is not None:
        return [(g.name, g.fee * subsidy.percent // 100) for g in groups]
    return []


def _pick_deadline(notice: Notice, today: dt.date | None) -> Window:
    windows = deadline_windows(notice)
    ahead = [w for w in windows if today is None or w.end >= today]
    if not ahead:
        raise Unavailable(
            "deadline",
            Msg(
                N_("{region}的通知在{date}之后没有写明截止日期的缴费期"),
                {"region": Term(notice.region.name), "date": today or notice.windows[-1].end},
            ),
        )
    return ahead[0]


def context(
    template_id: str, notice: Notice, today: dt.date | None = None, days: int | None = None
) -> dict[str, Any]:
    """What a template is given; raises Unavailable when the notice does not support it."""
    if template_id not in TEMPLATES:
        raise KeyError(template_id)
    reason = available(notice)[template_id]
    if reason is None and today is not None:
        reason = stale(template_id, notice, today)
    if reason is not None:
        raise Unavailable(template_id, reason)
    first = notice.windows[0]
    ctx: dict[str, Any] = {
        "notice": notice,
        "first": first,
        "general": general_rule(first),
        "definite": definite_end(notice, first),
        "general_registration": [r for r in notice.registration if r.when is None],
        "condition": lambda when: condition(notice, when),
    }
    if template_id == "collection_opens":
        ctx["notes"] = _unique(first.notes + general_rule(first).notes)
    elif template_id == "deadline":
        window = _pick_deadline(notice, today)
        if days is None:
            days = (window.end - today).days if today is not None else REMINDER_DAYS[0]
        following = notice.windows[notice.windows.index(window) + 1 :]
        after = following[0] if following else None
        ctx.update(
            window=window,
            rule=general_rule(window),
            days=days,
            after=after,
            after_rule=general_rule(after) if after else None,
            notes=_unique(
                window.notes
                + general_rule(window).notes
                + ((after.notes + general_rule(after).notes) if after else [])
            ),
        )
    elif template_id == "late_payment":
        windows = late_windows(notice)
        notes: list[Note] = []
        for w in windows:
            notes += w.notes
            for r in w.rules:
                if not r.when.newborn:
                    notes += r.notes
        ctx.update(
            windows=[
                {
                    "window": w,
                    "rule": general_rule(w),
                    "definite": definite_end(notice, w),
                    "groups": [r for r in w.rules[:-1] if r.when.categories and not r.when.newborn],
                }
                for w in windows
            ],
            notes=_unique(notes),
        )
    elif template_id == "newborn":
        rows = [(w, newborn_rules(w)) for w in notice.windows if newborn_rules(w)]
        ctx.update(
            windows=rows,
            registration=[r for r in notice.registration if r.when and r.when.newborn],
            notes=_unique([n for _, rules in rows for r in rules for n in r.notes]),
        )
    else:  # subsidy_groups
        groups = _group_subsidies(notice)
        notes = [n for g in groups for n in g["subsidy"].notes]
        if notice.multiple_categories.note is not None:
            notes.insert(0, notice.multiple_categories.note)
        ctx.update(groups=groups, notes=_unique(notes))
    return ctx


def render(
    template_id: str,
    notice: Notice,
    locale: str,
    today: dt.date | None = None,
    days: int | None = None,
) -> str:
    """The announcement as Telegram HTML in ``locale``.

    ``today`` is the day it goes out; ``deadline`` counts down to the first payment window
    with a definite end on or after it (without ``today``: the first such window, ``days``
    or 7 days before its end). Raises ``Unavailable`` when the notice does not support the
    template, ``KeyError`` for an unknown template id.
    """
    ctx = context(template_id, notice, today, days)
    html = render_template(locale, f"announcements/{template_id}.html.j2", **ctx)
    return _BLANK.sub("\n\n", "\n".join(line.rstrip() for line in html.splitlines()))

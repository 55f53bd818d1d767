"""The quote's timeline picture: payment window, late-payment window, the payment day, the
waiting period and the benefit period on one time axis.

``build`` turns a quote into a ``Timeline`` (dates and labels already in the resident's
language), small enough to travel in a stored ``Reply``; ``render_png`` draws it with
Pillow and a CJK font from the distribution (fonts-wqy-microhei). Without such a font
the bot keeps to text: ``available()`` is false and that is logged once.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import cache, lru_cache
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from babel.dates import format_skeleton
from pydantic import BaseModel

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont

from conversations.i18n import Localizer
from policies.models import Notice, Window
from policies.quote import Quote
from policies.text import N_

log = logging.getLogger(__name__)

# Where Debian/Ubuntu and Fedora put the CJK fonts they package, most compact first.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
WIDTH, HEIGHT = 960, 400
_LEFT, _RIGHT = 120, 40  # room for the row names; a margin for the last label
_ROWS = {"pay": 130, "cover": 240}  # y of each bar's top
_BAR = 34
_COLOURS = {
    "window": (52, 120, 198),
    "late": (232, 150, 40),
    "wait": (180, 180, 180),
    "benefit": (46, 160, 90),
}
SpanKind = Literal["window", "late", "wait", "benefit"]


class Span(BaseModel):
    start: dt.date
    end: dt.date
    kind: SpanKind
    label: str


class Timeline(BaseModel):
    title: str
    row_names: dict[str, str]  # pay, cover
    spans: list[Span]
    payment: dt.date
    payment_label: str
    ticks: list[tuple[dt.date, str]]  # first of each month shown, labelled


@cache
def font_path() -> str | None:
    found = next((p for p in FONT_CANDIDATES if Path(p).is_file()), None)
    if found is None:
        log.warning(
            "no CJK font found (apt-get install fonts-wqy-microhei): quotes go without a timeline"
        )
    return found


def available() -> bool:
    return font_path() is not None


def build(q: Quote, notice: Notice, payment: dt.date, loc: Localizer) -> Timeline:
    """The timeline of one quote, labelled in ``loc``'s language."""
    say = loc.gettext
    window = next(w for w in notice.windows if w.id == q.window)
    start = window.start or min(payment, window.end) - dt.timedelta(days=30)
    spans = [
        Span(
            start=start,
            end=window.end,
            kind="window",
            label=(
                say(N_("缴费期截止 {end}"))
                if window.end_stated
                else say(N_("截止日通知未写明，暂按 {end}"))
            ).format(end=loc.date(window.end)),
        )
    ]
    late = _late_window(notice, window)
    if late is not None and late.start is not None:
        spans.append(
            Span(
                start=late.start,
                end=late.end,
                kind="late",
                label=say(N_("之后仍可缴费，至 {end}")).format(end=loc.date(late.end)),
            )
        )
    if q.benefit_start is not None and q.benefit_end is not None:
        if q.benefit_start > payment:
            label = (
                say(N_("等待期 {months} 个月")).format(months=q.waiting_months)
                if q.waiting_months
                else say(N_("尚未生效"))
            )
            spans.append(Span(start=payment, end=q.benefit_start, kind="wait", label=label))
        spans.append(
            Span(
                start=q.benefit_start,
                end=q.benefit_end,
                kind="benefit",
                label=say(N_("待遇期 {start} 至 {end}")).format(
                    start=loc.date(q.benefit_start), end=loc.date(q.benefit_end)
                ),
            )
        )
    first = min(s.start for s in spans)
    last = max(s.end for s in spans)
    return Timeline(
        title=say(N_("{region} {year}年度：缴费和待遇时间轴")).format(
            region=loc.term(q.region_name), year=q.benefit_year
        ),
        row_names={"pay": say(N_("缴费")), "cover": say(N_("待遇"))},
        spans=spans,
        payment=payment,
        payment_label=say(N_("您缴费：{date}")).format(date=loc.date(payment)),
        ticks=_ticks(first, last, loc),
    )


def _late_window(notice: Notice, window: Window) -> Window | None:
    """The next window after this one in which everyone may still pay (补缴期 and the like)."""
    later = notice.windows[notice.windows.index(window) + 1 :]
    return next((w for w in later if w.rules[-1].enroll == "allowed"), None)


def _ticks(first: dt.date, last: dt.date, loc: Localizer) -> list[tuple[dt.date, str]]:
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    step = max(1, -(-months // 8))  # at most about 8 labels whatever the span
    ticks = []
    day = dt.date(first.year, first.month, 1)
    index = 0
    while day <= last:
        if index % step == 0:
            ticks.append((day, format_skeleton("yMMM", day, locale=loc.babel)))
        day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
        index += 1
    return ticks


# -- drawing ----------------------------------------------------------------------------


def render_png(timeline: Timeline) -> bytes | None:
    """The picture as PNG bytes; None where no CJK font is installed.

    Drawing takes 27–55 ms (benchmarks/bench_timeline.py), and residents of one region
    paying in the same weeks get the same few pictures: each is drawn once."""
    path = font_path()
    if path is None:
        return None
    return _drawn(path, timeline.model_dump_json())


@lru_cache(maxsize=256)  # about 35 KB each
def _drawn(path: str, spec: str) -> bytes:
    timeline = Timeline.model_validate_json(spec)
    from PIL import Image, ImageDraw, ImageFont  # 0.1–0.2 s to import: only when drawing

    font = ImageFont.truetype(path, 17)
    title_font = ImageFont.truetype(path, 22)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    first = min([s.start for s in timeline.spans] + [timeline.payment])
    last = max([s.end for s in timeline.spans] + [timeline.payment])
    days = max(1, (last - first).days)

    def x(day: dt.date) -> int:
        return _LEFT + round((day - first).days / days * (WIDTH - _LEFT - _RIGHT))

    draw.text((20, 18), timeline.title, fill="black", font=title_font)
    for row, top in _ROWS.items():
        draw.text((20, top + 6), timeline.row_names[row], fill="black", font=font)
    axis = HEIGHT - 70
    pay_x = x(timeline.payment)
    for y in range(95, axis, 12):  # dashed, under the bars: it never crosses a word
        draw.line((pay_x, y, pay_x, y + 6), fill=(200, 30, 30), width=2)
    bars = []
    for span in timeline.spans:
        top = _ROWS["pay" if span.kind in ("window", "late") else "cover"]
        x0, x1 = x(span.start), max(x(span.end), x(span.start) + 3)
        draw.rectangle((x0, top, x1, top + _BAR), fill=_COLOURS[span.kind])
        bars.append((span.label, x0, x1, top, span.kind == "late"))
    draw.line((_LEFT, axis, WIDTH - _RIGHT, axis), fill="black", width=2)
    for day, text in timeline.ticks:
        draw.line((x(day), axis - 5, x(day), axis + 5), fill="black", width=1)
        draw.text((x(day) - 20, axis + 10), text, fill=(80, 80, 80), font=font)
    for label, x0, x1, top, above in bars:
        _label(draw, label, x0, x1, top, font, above)
    width = draw.textlength(timeline.payment_label, font=font)
    draw.text(
        (min(max(pay_x - width / 2, _LEFT), WIDTH - _RIGHT - width), 72),
        timeline.payment_label,
        fill=(200, 30, 30),
        font=font,
    )
    out = BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _label(
    draw: ImageDraw.ImageDraw,
    text: str,
    x0: int,
    x1: int,
    top: int,
    font: ImageFont.FreeTypeFont,
    above: bool = False,
) -> None:
    """Inside the bar where it fits, else below it (above: for the second bar of a row, so
    two labels never meet), kept inside the picture."""
    width = draw.textlength(text, font=font)
    if width + 10 <= x1 - x0:
        draw.text((x0 + 5, top + 7), text, fill="white", font=font)
        return
    left = min(max(x0, _LEFT), WIDTH - _RIGHT - width)
    y = top - 26 if above else top + _BAR + 4
    box = draw.textbbox((left, y), text, font=font)
    draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill="white")
    draw.text((left, y), text, fill="black", font=font)

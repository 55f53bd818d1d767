"""The timeline picture: drawn for one case per notice and window, the right size, not
blank, labelled in the reader's language; without a CJK font the quote keeps to text."""

from __future__ import annotations

import datetime as dt
import io
import logging
from typing import Any

import pytest
import yaml
from PIL import Image

from conversations import timeline
from conversations.context import Context
from conversations.i18n import localizer
from conversations.quote_view import applicant, render_quote
from conversations.state import State, Step
from policies.engine import quote
from policies.loader import NOTICES_DIR, default_library, notice_files

NOW = dt.datetime(2023, 11, 5, 10, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def _one_case_per_window() -> list[Any]:
    """The first case of each notice and payment window that yields a period of cover."""
    library, seen, params = default_library(), set(), []
    for path in notice_files(NOTICES_DIR):
        region = path.stem.split("-")[0]
        for case in yaml.safe_load(path.with_name(path.stem + ".cases.yaml").read_text("utf-8")):
            given = case["input"]
            if "error" in case or given.get("region", region) != region:
                continue
            state = _state(region, given)
            q = quote(library, applicant(state))
            if q.benefit_start is None or (q.notice, q.window) in seen:
                continue
            seen.add((q.notice, q.window))
            params.append(pytest.param(state, id=f"{q.notice}:{q.window}"))
    return params


def _state(region: str, given: dict[str, Any]) -> State:
    return State(
        step=Step.QUOTED,
        region=region,
        birth_date=given["birth_date"],
        payment_date=given["date"],
        categories=list(given.get("categories") or []),
        categories_done=True,
        tier=given.get("tier"),
    )


def _spec(state: State, locale: str) -> timeline.Timeline:
    q = quote(default_library(), applicant(state))
    notice = next(n for n in default_library().notices if n.id == q.notice)
    assert state.payment_date is not None
    return timeline.build(q, notice, state.payment_date, localizer(locale))


WINDOWS = _one_case_per_window()


def test_every_notice_has_pictures() -> None:
    notices = {p.id.split(":")[0] for p in WINDOWS}
    assert notices == {p.stem for p in notice_files(NOTICES_DIR)}
    assert len(WINDOWS) >= 10  # 达拉特旗 2, 通河县 2, 乌拉特前旗 2, 凤山街道 5, 商洛市 3 …


@pytest.mark.parametrize("state", WINDOWS)
@pytest.mark.parametrize("locale", ["zh_Hans", "en"])
def test_picture_is_drawn_the_right_size_and_not_blank(state: State, locale: str) -> None:
    png = timeline.render_png(_spec(state, locale))
    assert png is not None and 5_000 < len(png) < 200_000  # far below Telegram's 10 MB
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (timeline.WIDTH, timeline.HEIGHT)
    counts = {colour: n for n, colour in image.getcolors(maxcolors=1 << 20) or []}
    ink = 1 - counts.get((255, 255, 255), 0) / (image.width * image.height)
    assert 0.03 < ink < 0.6, ink  # bars, words and the axis; not an empty or a filled frame
    colours = set(counts)
    # The cover bar is always there; the payment window too.
    assert timeline._COLOURS["benefit"] in colours and timeline._COLOURS["window"] in colours


def test_labels_follow_the_reader_and_the_notice() -> None:
    # 商洛市 四: 集中缴费期 to 2023-12-20, 补缴期 2024-01-01 … 06-30; 四（一）: cover 2024.
    state = _state("shangluo", {"birth_date": dt.date(1980, 5, 1), "date": dt.date(2023, 11, 5)})
    zh, en = _spec(state, "zh_Hans"), _spec(state, "en")
    kinds = {s.kind: s for s in zh.spans}
    assert kinds["window"].end == dt.date(2023, 12, 20)
    assert (kinds["late"].start, kinds["late"].end) == (dt.date(2024, 1, 1), dt.date(2024, 6, 30))
    assert (kinds["benefit"].start, kinds["benefit"].end) == (
        dt.date(2024, 1, 1),
        dt.date(2024, 12, 31),
    )
    assert "截止 2023年12月20日" in kinds["window"].label
    assert zh.payment_label == "您缴费：2023年11月5日"
    assert en.payment_label == "You pay: November 5, 2023"
    assert "December 20, 2023" in next(s.label for s in en.spans if s.kind == "window")


def test_waiting_period_is_drawn_between_payment_and_cover() -> None:
    # 凤山街道 四（一）: paid on or after 2023-03-01, "须3个月等待期结束后开始享受待遇".
    state = _state(
        "fengshan", {"birth_date": dt.date(1980, 1, 1), "date": dt.date(2023, 3, 31), "tier": 1}
    )
    wait = next(s for s in _spec(state, "zh_Hans").spans if s.kind == "wait")
    assert (wait.start, wait.end) == (dt.date(2023, 3, 31), dt.date(2023, 6, 30))
    assert wait.label == "等待期 3 个月"


def test_without_a_cjk_font_the_quote_keeps_to_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(timeline, "FONT_CANDIDATES", ("/nonexistent/font.ttc",))
    timeline.font_path.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="conversations.timeline"):
            state = WINDOWS[0].values[0]
            assert timeline.render_png(_spec(state, "zh_Hans")) is None
            q = quote(default_library(), applicant(state))
            reply = render_quote(q, state, Context(default_library(), NOW))
            assert "qd:pic" not in [b.data for row in reply.buttons for b in row]
            timeline.render_png(_spec(state, "en"))
        assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
        assert "fonts-wqy-microhei" in caplog.records[0].message
    finally:
        timeline.font_path.cache_clear()

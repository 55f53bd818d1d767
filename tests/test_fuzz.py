"""Fuzzing the conversation service (issue 13): random events of every kind, from residents
and staff, with updates delivered again; no exception, no empty reply, and every reply
is one Telegram accepts (valid HTML within the limits, once split; valid keyboards).

CI runs FUZZ_EVENTS events (default 10,000); by hand, e.g.
``FUZZ_EVENTS=100000 .venv/bin/python -m pytest tests/test_fuzz.py -q``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
from pathlib import Path
from zoneinfo import ZoneInfo

from botapi_stub import CAPTION_MAX, MAX_BUTTONS, MAX_CALLBACK_DATA, html_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.service import ConversationService
from bot.splitting import split_html
from bot.storage import Store
from conversations import announcements, callbacks
from conversations.i18n import LOCALES
from conversations.state import Command, Event, Press, Reply, Text
from policies.loader import default_library

EVENTS = int(os.environ.get("FUZZ_EVENTS", "10000"))
PER_EXAMPLE = 50
NOW = dt.datetime(2023, 11, 5, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

LIBRARY = default_library()
REGIONS = sorted({n.region.id for n in LIBRARY.notices})
CATEGORIES = sorted({c.id for n in LIBRARY.notices for c in n.categories})
COMMANDS = [
    "start",
    "quote",
    "faq",
    "subscribe",
    "unsubscribe",
    "help",
    "lang",
    "cancel",
    "broadcast",
    "broadcast_status",
    "reminders",
    "nontext",
    "no_such_command",
]
BUTTONS = [
    *["restart", "back", "faq", "edit", "bc:send", "bc:quit"],
    *["pay:today", "pay:2023-11-01", "pay:2022-12-10", "cat:none", "cat:done"],
    *(f"edit:{s}" for s in ("region", "birth", "categories", "tier", "payment", "cover")),
    *(f"lang:{code}" for code in LOCALES),
    *(f"bc:l:{code}" for code in LOCALES),
    *(
        f"{p}:{r}"
        for p in ("region", "faqregion", "sub", "bc:r", "rem:on", "rem:off")
        for r in REGIONS
    ),
    *(f"cat:{c}" for c in CATEGORIES),
    *(f"bc:t:{t}" for t in announcements.TEMPLATES),
    *["tier:1", "tier:2", "bc:stop:1", "qd:nonesuch", "cover:0", "cover:3", "cover:99"],
    *(f"qd:{detail}" for detail in ("why", "pay", "reg", "notes", "offline", "online", "pic")),
]
FORGED = ["edit:xyz", "edit:", "rem:", "rem:on", "bc:stop:²", "bc:stop:" + "9" * 25, "cat:", "x"]
PHRASES = [
    *["商洛", "通河", "武隆", "凤山", "达旗", "乌前旗", "达拉特旗", "通河县"],
    *["1980-01-01", "1961/7/23", "20230310", "2023年3月10日", "今天"],
    *["2023-02-30", "1899-01-01", "2099-01-01"],
    *["低保户", "特困", "监测对象", "完成", "好了", "以上都不是", "一档", "二档", "1", "ok"],
    *["低保户自己掏多少", "错过了还能补交吗", "娃刚生下来咋交", "在哪交", "武隆二档多少钱"],
    "How much do I pay?",
]
ODD = "\x00\u200b\u200d\u200e\u200f\u202e\u2066\ufeff🙂👨‍👩‍👧<>&\"'\n\t ́"
texts = st.one_of(
    st.sampled_from(PHRASES),
    st.text(alphabet=st.sampled_from(ODD + "低保商洛2023-/年月日ab"), max_size=60),
    st.text(max_size=40),
    st.builds(
        lambda unit, n: unit * n,
        st.sampled_from(["乌", "<b>", "&", "🙂", "商洛 ", "\u202e", "a\n"]),
        st.integers(500, 5000),
    ),
)
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(Text, texts),
    st.builds(Command, st.sampled_from(COMMANDS)),
    st.builds(Press, st.sampled_from(BUTTONS)),
    st.builds(Press, st.sampled_from(FORGED) | st.text(max_size=70)),
)
# (event, from staff, delivered again instead of a new update)
steps = st.lists(
    st.tuples(events, st.booleans(), st.integers(0, 9).map(lambda n: n == 0)),
    min_size=PER_EXAMPLE,
    max_size=PER_EXAMPLE,
)


def check(reply: Reply) -> None:
    assert reply.html.strip(), "an empty reply"
    if reply.photo is not None:  # sent as the picture's caption
        problem = html_error(reply.html, CAPTION_MAX, "message caption")
        assert problem is None, f"{problem}: {reply.html[:300]!r}"
    for part in split_html(reply.html):
        problem = html_error(part)
        assert problem is None, f"{problem}: {part[:300]!r}"
    datas = [b.data for row in reply.buttons for b in row]
    assert len(datas) <= MAX_BUTTONS
    assert all(1 <= len(d.encode()) <= MAX_CALLBACK_DATA for d in datas), datas
    # Every button we offer passes the parser (else pressing it would say "expired").
    assert all(callbacks.parse(d) is not None for d in datas), datas
    assert all(b.label.strip() for row in reply.buttons for b in row)


def test_random_events_never_fail_and_every_reply_is_sendable(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/fuzz.db")
    loop.run_until_complete(store.init())
    service = ConversationService(store, LIBRARY, clock=lambda: NOW)
    chats, updates = itertools.count(1), itertools.count(1)
    handled = [0]

    async def drive(chat: int, script: list[tuple[Event, bool, bool]]) -> None:
        delivered: list[int] = []
        for event, staff, again in script:
            redelivery = again and bool(delivered)
            update_id = delivered[-1] if redelivery else next(updates)
            outbox = await service.receive(chat, event, update_id, "zh-hans", staff=staff)
            if not redelivery:
                assert outbox, f"no reply to {event!r}"
                delivered.append(update_id)
            for item in outbox:
                check(item.reply)
                await service.sent(item)
            handled[0] += 1

    @settings(
        max_examples=-(-EVENTS // PER_EXAMPLE),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(steps)
    def run(script: list[tuple[Event, bool, bool]]) -> None:
        loop.run_until_complete(drive(next(chats), script))

    try:
        run()
    finally:
        loop.run_until_complete(store.close())
        loop.close()
    assert handled[0] >= EVENTS
    print(f"\n{handled[0]} events handled")

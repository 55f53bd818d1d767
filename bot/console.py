"""The same conversation in a terminal: buttons become numbered choices."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re
import sys
from pathlib import Path
from typing import TextIO

from bot.service import ConversationService
from conversations import timeline
from conversations.i18n import DEFAULT, localizer
from conversations.state import Button, Command, Event, Press, Reply, Text
from policies.text import N_

CONSOLE_CHAT = 0
PICTURES = Path("data") / "pictures"  # beside the database, out of git
_TAG = re.compile(r"</?(b|i|u|s|code|pre)>")
_QUIT = {"/quit", "/exit", "quit", "exit", "退出"}


def plain(reply_html: str) -> str:
    return html.unescape(_TAG.sub("", reply_html))


def show(
    replies: list[Reply], out: TextIO, hint: str = "", pictures: Path = PICTURES
) -> list[Button]:
    buttons: list[Button] = []
    for reply in replies:
        out.write(plain(reply.html) + "\n")
        if reply.photo is not None:
            saved = save_picture(reply.photo, pictures)
            if saved is not None:
                out.write(f"🖼 {saved}\n")
        for row in reply.buttons:
            cells = []
            for b in row:
                buttons.append(b)
                cells.append(f"[{len(buttons)}] {b.label}")
            out.write("  " + "   ".join(cells) + "\n")
        out.write("\n")
    if buttons and hint:
        out.write(hint + "\n")
    out.flush()
    return buttons


def save_picture(spec: timeline.Timeline, directory: Path) -> Path | None:
    """The picture a chat would show, as a PNG file; None where it cannot be drawn."""
    png = timeline.render_png(spec)
    if png is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"timeline-{dt.datetime.now():%Y%m%d-%H%M%S-%f}.png"
    path.write_bytes(png)
    return path.resolve()


def to_event(line: str, buttons: list[Button]) -> Event:
    text = line.strip()
    if text.isdigit() and 1 <= int(text) <= len(buttons):
        return Press(buttons[int(text) - 1].data)
    if text.startswith("/"):
        return Command(text[1:].split()[0].lower())
    return Text(text)


async def run_console(
    service: ConversationService,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    language: str | None = None,
    staff: bool = False,
) -> None:
    async def process(event: Event) -> list[Reply]:
        return await service.process(CONSOLE_CHAT, event, language_code=language, staff=staff)

    if language is not None:  # --lang wins over a language chosen in an earlier session
        await process(Press(f"lang:{language}"))
    loc = localizer(language or DEFAULT)
    hint = loc.gettext(N_("（输入编号选择，或直接输入文字；/help 帮助，/quit 退出）"))
    buttons = show(await process(Command("start")), stdout, hint)
    while True:
        stdout.write("> ")
        stdout.flush()
        line = await asyncio.to_thread(stdin.readline)
        if not line or line.strip() in _QUIT:
            stdout.write(loc.gettext(N_("再见！")) + "\n")
            return
        if not line.strip():
            continue
        buttons = show(await process(to_event(line, buttons)), stdout, hint)

"""Issue 14, "several processes behind one webhook address": the real ``python -m bot
serve --workers 2`` on PostgreSQL. Any update may reach either process; a chat's updates
are applied one at a time and exactly once, its replies sent in the order they were
applied, and a process killed mid-run is started again without losing a conversation.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from botapi_stub import JSONDict
from test_e2e_bot import WAIT, BotProcess, Harness, free_port

from bot.storage import Store

SECRET = "service-secret"
CATEGORIES = ["dibao", "tekun", "guer", "jiance", "fanpin", "veteran"]


@pytest.fixture
def service(harness: Harness, postgres_db: str) -> tuple[BotProcess, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    bot = harness.launch(
        "setWebhook",
        args=["serve", "--workers", "2"],
        DATABASE_URL=postgres_db,
        AUTO_MIGRATE="true",
        WEBHOOK_URL=url,
        WEBHOOK_LISTEN="127.0.0.1",
        WEBHOOK_PORT=str(port),
        WEBHOOK_SECRET=SECRET,
        TODAY="2023-11-01",  # during 商洛市's 2023 collection for 2024 benefits
    )
    return bot, url


def workers(bot: BotProcess) -> list[int]:
    """The worker processes' ids (the children of ``serve``), once both are up."""
    deadline = time.monotonic() + WAIT
    while True:
        path = Path(f"/proc/{bot.pid}/task/{bot.pid}/children")
        pids = [int(p) for p in path.read_text().split()]
        if len(pids) == 2 or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def deliver(client: httpx.Client, url: str, update: JSONDict) -> None:
    """As Telegram does: the update again until the webhook answers 200 (a process killed
    while holding the connection, or a 500, means it was not confirmed)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            status = client.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            ).status_code
            if status == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"update {update['update_id']} never confirmed"
        time.sleep(0.05)


def applied(url: str, chat_id: int) -> tuple[list[int], int]:
    """The chat's handled update ids and its row version (one per update applied)."""

    async def load() -> tuple[list[int], int]:
        store = Store(url)
        try:
            state, version = await store.load(chat_id)
        finally:
            await store.close()
        assert state is not None
        return sorted(state.seen), version

    return asyncio.run(load())


def committed(metrics: str) -> float:
    """Updates committed, by the Prometheus page."""
    found = re.search(r'^yibao_updates_handled_total\{outcome="committed"\} (\S+)$', metrics, re.M)
    assert found is not None, metrics
    return float(found.group(1))


def selected(record: JSONDict) -> int:
    """Categories marked chosen on a categories keyboard."""
    rows = record["reply_markup"]["inline_keyboard"]
    return sum(str(b["text"]).startswith("✅") for row in rows for b in row)


def test_a_chats_concurrent_updates_are_applied_once_and_answered_in_order(
    harness: Harness,
    service: tuple[BotProcess, str],
    postgres_db: str,
) -> None:
    bot, url = service
    assert len(workers(bot)) == 2
    stub = harness.stub
    chats = list(range(7001, 7009))
    with httpx.Client(trust_env=False, timeout=WAIT) as client, ThreadPoolExecutor(16) as pool:
        for text in ("/start", "商洛", "1980-01-01"):
            updates = [stub.send_text(chat, text) for chat in chats]
            list(pool.map(lambda u: deliver(client, url, u), updates))
        # Each chat presses six categories at once: the presses travel on separate
        # connections and reach either process, in any order.
        presses: list[JSONDict] = []
        for chat in chats:
            keyboard = stub.sent_messages(chat)[-1]
            presses += [
                stub.press_button(chat, keyboard["message_id"], f"cat:{c}") for c in CATEGORIES
            ]
        list(pool.map(lambda u: deliver(client, url, u), presses))
    # /metrics from whichever worker answers counts every worker's updates.
    metrics_url = url.removesuffix("/hook") + "/metrics"
    for _ in range(4):
        page = httpx.get(metrics_url, timeout=WAIT, trust_env=False).text
        assert committed(page) == len(chats) * (3 + len(CATEGORIES)), page
    for chat in chats:
        seen, version = applied(postgres_db, chat)
        assert version == 3 + len(CATEGORIES), (chat, version)  # each update applied once
        assert len(seen) == 3 + len(CATEGORIES)
        edits = [m for m in stub.sent_messages(chat) if m["method"] == "editMessageText"]
        # Each edit shows one more category chosen than the one before: the replies went
        # out in the order their updates were applied, whichever process applied them.
        assert [selected(m) for m in edits] == list(range(1, len(CATEGORIES) + 1)), chat


def test_a_killed_worker_is_restarted_and_no_conversation_is_lost(
    harness: Harness,
    service: tuple[BotProcess, str],
    postgres_db: str,
) -> None:
    bot, url = service
    first, second = workers(bot)
    stub = harness.stub
    chats = list(range(7101, 7141))
    script = ["/start", "商洛", "1980-01-01", "低保", "2023-11-20"]
    with httpx.Client(trust_env=False, timeout=WAIT) as client, ThreadPoolExecutor(20) as pool:

        def converse(chat: int) -> None:
            for step, text in enumerate(script):
                if chat == chats[len(chats) // 2] and step == 2:
                    os.kill(first, signal.SIGKILL)  # mid-run, with other chats in flight
                deliver(client, url, stub.send_text(chat, text))

        list(pool.map(converse, chats))
    assert bot.alive()
    now = workers(bot)
    assert second in now and first not in now and len(now) == 2, now
    base = url.removesuffix("/hook")
    assert httpx.get(f"{base}/healthz", timeout=WAIT, trust_env=False).json()["ok"] is True
    # The killed worker's figures are still counted (a redelivered update counts again).
    page = httpx.get(f"{base}/metrics", timeout=WAIT, trust_env=False).text
    assert committed(page) >= len(chats) * len(script)
    for chat in chats:
        seen, version = applied(postgres_db, chat)
        assert version == len(script) and len(seen) == len(script), (chat, version)
        texts = [str(m["text"]) for m in stub.sent_messages(chat)]
        # 商洛市 一（三）: 380 a year; 二（二）: 低保对象 get 190 of it, so 190 is due.
        assert "现在需缴：<b>190元</b>" in texts[-1], texts[-1]


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"WEBHOOK_URL": ""}, "serve 需要 BOT_TOKEN 和 WEBHOOK_URL"),
        ({"WEBHOOK_URL": "http://127.0.0.1:9/hook"}, "多个进程需要 PostgreSQL"),
    ],
)
def test_serve_refuses_what_cannot_work(
    harness: Harness, settings: dict[str, str], says: str
) -> None:
    """Without a webhook address, or several processes on one SQLite file: a clear line
    and status 2, nothing started."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--workers", "2"],
        cwd=harness.tmp_path,
        env=harness.env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"错误：{says}"), done.stderr


def test_workers_stop_when_serve_is_killed(service: tuple[BotProcess, str]) -> None:
    """A supervisor killed outright leaves no worker holding the port or the database."""
    bot, _ = service
    pids = workers(bot)
    bot.sigkill()
    deadline = time.monotonic() + WAIT
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "a worker outlived serve"
        time.sleep(0.1)

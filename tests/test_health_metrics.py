"""``/healthz`` and ``/metrics`` of the real bot: on a port of their own when polling, on
the webhook's server otherwise; the figures move with what residents do, and no label
carries a resident's text or id."""

from __future__ import annotations

import sqlite3
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from telegram.error import BadRequest, Forbidden
from test_delivery import wipe_broadcasts
from test_e2e_bot import CHAT, WAIT, Chat, Harness, free_port, launch_webhook, post, start_update

from bot import metrics
from bot.broadcast_store import BroadcastStore
from bot.delivery import DeliveryWorker, Pacer
from bot.storage import Store

# 通河县 四: the concentrated period ends 2022-12-31 and the notice says nothing of an adult
# paying in January 2023 (tests/test_faq.py): a question the notices do not answer.
UNANSWERED = "通河县2023年1月15号去交可以吗"


def get(url: str) -> httpx.Response:
    deadline = time.monotonic() + WAIT
    with httpx.Client(trust_env=False, timeout=WAIT) as client:
        while True:
            try:
                return client.get(url)
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_polling_bot_serves_health_and_metrics_on_its_port(harness: Harness) -> None:
    port = free_port()
    harness.launch(METRICS_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    health = get(f"{base}/healthz")
    assert health.status_code == 200
    assert health.json() == {"ok": True, "database": "ok", "migration": "0003", "head": "0003"}

    chat = Chat(harness.stub)
    chat.send("/start")
    chat.send("/faq")
    answer = chat.send(UNANSWERED)
    assert "县医疗保障局" in answer["text"]
    harness.stub.fail_next("sendMessage", 400, "Bad Request: chat not found", chat_id=CHAT)
    after = harness.stub.call_count()
    harness.stub.send_text(CHAT, "/help", language_code="zh-hans")
    harness.stub.wait_for(lambda m, _p: m == "sendMessage", timeout=WAIT, after_index=after)

    body = get(f"{base}/metrics").text
    found = samples(body)
    assert found[("yibao_updates_handled_total", (("outcome", "committed"),))] >= 3
    assert found[("yibao_update_handling_seconds_count", ())] >= 3
    assert found[("yibao_replies_sent_total", ())] >= 3
    assert found[("yibao_faq_no_answer_total", (("region", "tonghe"),))] == 1
    assert found[("yibao_telegram_errors_total", (("error", "BadRequest"),))] >= 1
    assert found[("yibao_broadcast_pending", ())] == 0
    # Never a resident's id or words in a name or label (values are numbers: a timestamp's
    # digits may hold anything).
    names = "\n".join(line.rsplit(" ", 1)[0] for line in body.splitlines())
    assert str(CHAT) not in names and "通河" not in names and "2023" not in names

    # A database behind the code (someone rolled the schema back): not healthy.
    with sqlite3.connect(harness.db) as db:
        db.execute("UPDATE alembic_version SET version_num = 'older'")
    behind = get(f"{base}/healthz")
    assert behind.status_code == 503
    assert behind.json()["migration"] == "older"


def test_webhook_bot_serves_health_and_metrics_beside_the_hook(harness: Harness) -> None:
    _, url, _ = launch_webhook(harness, WEBHOOK_SECRET="s3cret")
    assert post(url, start_update(1, CHAT), "s3cret") == 200
    base = url.rsplit("/", 1)[0]
    assert get(f"{base}/healthz").json()["ok"] is True
    found = samples(get(f"{base}/metrics").text)
    assert found[("yibao_updates_handled_total", (("outcome", "committed"),))] == 1
    assert found[("yibao_replies_sent_total", ())] >= 1


async def test_pending_deliveries_are_counted_across_broadcasts(database_url: str) -> None:
    store = Store(database_url)
    await store.init()
    broadcasts = BroadcastStore(store)
    try:
        for chat in (101, 102, 103):
            await broadcasts.subscribe(chat, "shangluo", "zh_Hans")
        await broadcasts.subscribe(104, "tonghe", "zh_Hans")
        assert await broadcasts.unfinished() == 0
        await broadcasts.queue_broadcast("deadline", "shangluo", 900, {"zh_Hans": "x"})
        await broadcasts.queue_broadcast("deadline", "tonghe", 900, {"zh_Hans": "x"})
        assert await broadcasts.unfinished() == 4
        # Claimed by a worker that died (its lease ended): unfinished until someone sends.
        claimed = await broadcasts.claim_next(2, owner="killed", lease=0.001)
        assert len(claimed) == 2 and await broadcasts.unfinished() == 4
        await broadcasts.mark_sent(claimed[0].broadcast_id, claimed[0].chat_id)
        assert await broadcasts.unfinished() == 3
    finally:
        await store._run(wipe_broadcasts, commit=True)
        await store.close()


async def test_broadcast_outcomes_are_counted(database_url: str) -> None:
    store = Store(database_url)
    await store.init()
    broadcasts = BroadcastStore(store)

    async def send(chat_id: int, _text: str) -> None:
        if chat_id == 202:
            raise BadRequest("Chat not found")
        if chat_id == 203:
            raise Forbidden("Forbidden: bot was blocked by the user")

    def counted(outcome: str) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "yibao_broadcast_messages_total", {"outcome": outcome}
        )
        return value or 0.0

    before = {o: counted(o) for o in ("sent", "failed", "unsubscribed")}
    try:
        for chat in (201, 202, 203, 204):
            await broadcasts.subscribe(chat, "dalate", "zh_Hans")
        await broadcasts.queue_broadcast("collection_opens", "dalate", 900, {"zh_Hans": "x"})
        await DeliveryWorker(broadcasts, send, Pacer(100)).drain()
        after = {o: counted(o) - before[o] for o in before}
        assert after == {"sent": 2, "failed": 1, "unsubscribed": 1}
        assert await broadcasts.unfinished() == 0
    finally:
        await store._run(wipe_broadcasts, commit=True)
        await store.close()

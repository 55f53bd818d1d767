"""Prometheus metrics of this process, and the ``/healthz`` and ``/metrics`` pages.

Labels are never a resident's text or id: an outcome, an exception's class name, a
region id from the notices.
"""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from typing import Any

import tornado.web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from telegram.error import TelegramError
from telegram.request import HTTPXRequest

from bot import migrate as migrations
from bot.broadcast_store import BroadcastStore

# prometheus-client keeps each process's figures in files there when set at import.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY = CollectorRegistry()
UPDATES = Counter(
    "yibao_updates_handled",
    "Telegram updates handled, by outcome (committed, or failed and left for redelivery)",
    ["outcome"],
    registry=REGISTRY,
)
HANDLING = Histogram(
    "yibao_update_handling_seconds",
    "Time from an update's arrival in this process to its commit and replies sent",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
REPLIES = Counter("yibao_replies_sent", "Replies sent to residents", registry=REGISTRY)
TELEGRAM_ERRORS = Counter(
    "yibao_telegram_errors",
    "Bot API calls that failed, by error class",
    ["error"],
    registry=REGISTRY,
)
BROADCAST = Counter(
    "yibao_broadcast_messages",
    "Announcement deliveries finished, by outcome (sent, failed, unsubscribed)",
    ["outcome"],
    registry=REGISTRY,
)
BROADCAST_PENDING = Gauge(
    "yibao_broadcast_pending",
    "Announcement deliveries not finished yet (all processes: read from the database)",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
FAQ_NO_ANSWER = Counter(
    "yibao_faq_no_answer",
    "FAQ questions the region's notices do not answer",
    ["region"],
    registry=REGISTRY,
)


class CountingRequest(HTTPXRequest):
    """PTB's HTTP transport, counting the Bot API calls that fail by error class."""

    # post() is marked final, but it is where a failed call becomes its TelegramError: the
    # one place that sees every error of every call, whoever made it.
    async def post(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        try:
            return await super().post(*args, **kwargs)
        except TelegramError as err:
            TELEGRAM_ERRORS.labels(type(err).__name__).inc()
            raise


class HealthHandler(tornado.web.RequestHandler):
    """200 when the database answers and is at the newest migration; 503 otherwise."""

    SUPPORTED_METHODS = ("GET",)

    def initialize(self, broadcasts: BroadcastStore) -> None:
        self.store = broadcasts.store

    async def get(self) -> None:
        head = migrations.head()
        try:
            found = await self.store._run(migrations.current, commit=False)
        except Exception as err:
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, database=type(err).__name__)
            return
        status = HTTPStatus.OK if found == head else HTTPStatus.SERVICE_UNAVAILABLE
        self._answer(status, database="ok", migration=found, head=head)

    def _answer(self, status: HTTPStatus, **body: object) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"ok": status == HTTPStatus.OK, **body}))


class MetricsHandler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET",)

    def initialize(self, broadcasts: BroadcastStore) -> None:
        self.broadcasts = broadcasts

    async def get(self) -> None:
        try:
            BROADCAST_PENDING.set(await self.broadcasts.unfinished())
        except Exception:  # the database is away: the other figures are still worth having
            BROADCAST_PENDING.set(float("nan"))
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(_registry()))


def _registry() -> CollectorRegistry:
    """This process's figures; under ``python -m bot serve`` (``PROMETHEUS_MULTIPROC_DIR``
    set) every worker's, summed, whichever worker answers, a killed one's included."""
    if not os.environ.get(MULTIPROCESS_DIR):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def routes(broadcasts: BroadcastStore) -> list[tuple[str, type[tornado.web.RequestHandler], Any]]:
    """``/healthz`` and ``/metrics``, for the webhook's server or a server of their own."""
    args = {"broadcasts": broadcasts}
    return [(r"/healthz", HealthHandler, args), (r"/metrics", MetricsHandler, args)]

"""Configuration from the environment or a ``.env`` file (pydantic-settings)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr | None = None
    # A local Bot API server or a test stand-in, e.g. http://127.0.0.1:8081/bot
    telegram_base_url: str = "https://api.telegram.org/bot"
    database_url: str = "sqlite+aiosqlite:///./data/bot.db"
    # Migrate the schema to head at start; unset: on for SQLite (./start.sh on a fresh
    # machine), off for PostgreSQL, where `python -m bot migrate` is a deployment step.
    auto_migrate: bool | None = None
    staff_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    webhook_url: str | None = None  # polling when unset
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    # /healthz and /metrics: on the webhook's server, and on this port when set (polling).
    metrics_port: int | None = None
    metrics_listen: str = "127.0.0.1"
    timezone: str = "Asia/Shanghai"
    # The calendar day the bot lives on, when not today: staff rehearsing a past or coming
    # campaign against a copy of the database (and the end-to-end tests) set it.
    today: dt.date | None = None
    # Stored conversations untouched for this long are deleted (they hold birth dates).
    retention_hours: int = 24
    # Broadcast delivery: Telegram's limits are about 30 messages a second overall and one
    # a second per chat; interactive replies count too and go first.
    broadcast_per_second: int = Field(default=25, ge=1)
    broadcast_per_chat_interval: float = Field(default=1.0, ge=0)
    # Sends in flight at once: the rate needs per_second × Telegram's round trip of them,
    # and after a crash at most this many recipients can get a message twice.
    broadcast_concurrency: int = Field(default=4, ge=1)
    # Every process sends broadcasts (on SQLite one at a time); false: this one never does.
    broadcast_worker: bool = True
    # A worker's claim on a recipient lasts this long unless renewed: a killed process's
    # recipients are sent by the others about this long after it died. It must exceed
    # twice (BROADCAST_PER_CHAT_INTERVAL + 1 s).
    broadcast_lease_seconds: float = Field(default=20.0, gt=0)
    broadcast_progress_interval: float = 10.0  # seconds between progress messages to staff
    reminder_hour: int = Field(default=9, ge=0, le=23)  # scheduled reminders go from then

    def now(self) -> dt.datetime:
        """The time in ``TIMEZONE``, on ``TODAY`` when set."""
        now = dt.datetime.now(ZoneInfo(self.timezone))
        if self.today is None:
            return now
        return dt.datetime.combine(self.today, now.timetz())

    @property
    def migrates_at_start(self) -> bool:
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.database_url.startswith("sqlite")

    @model_validator(mode="after")
    def _lease_outlasts_the_interval(self) -> Settings:
        if self.broadcast_lease_seconds <= 2 * (self.broadcast_per_chat_interval + 1):
            raise ValueError(
                "BROADCAST_LEASE_SECONDS must exceed twice (BROADCAST_PER_CHAT_INTERVAL + 1)"
            )
        return self

    @field_validator("staff_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.replace(" ", "").split(",") if part)
        if isinstance(value, int):
            return frozenset([value])
        return value

    @field_validator("bot_token", "webhook_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

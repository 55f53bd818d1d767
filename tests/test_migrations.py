"""The schema comes from the Alembic migrations alone: an empty SQLite file and an empty
PostgreSQL database migrate to head, end up with exactly the tables the code uses, and the
bot starts on them (and refuses to start on one nobody migrated, with AUTO_MIGRATE off)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection
from test_e2e_bot import ROOT, WELCOME, Chat, Harness

from bot import migrate as migrations
from bot.broadcast_store import BroadcastStore  # its tables are on the metadata compared
from bot.storage import Store, conversations, metadata
from conversations.state import State

TABLES = {
    "conversations",
    "outbox",
    "subscriptions",
    "broadcasts",
    "broadcast_texts",
    "deliveries",
    "audit",
    "reminder_settings",
    "broadcast_pacing",
    "broadcast_sends",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def store(empty_url: str) -> AsyncIterator[Store]:
    s = Store(empty_url)
    yield s
    await s.close()


def differences(conn: Connection) -> list[object]:
    """What the migrated schema lacks or has beyond the code's tables (empty: the same)."""
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


def tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


def migrate_cli(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cli_migrates_an_empty_database_to_exactly_the_codes_tables(
    empty_url: str, store: Store
) -> None:
    assert await store._run(tables, commit=False) == set()
    done = migrate_cli(empty_url)
    assert done.returncode == 0, done.stderr
    assert "0003" in done.stdout
    assert await store._run(migrations.current, commit=False) == migrations.head() == "0003"
    assert await store._run(tables, commit=False) == TABLES
    assert await store._run(differences, commit=False) == []
    again = migrate_cli(empty_url)  # at head already: nothing to do, no error
    assert again.returncode == 0, again.stderr


def test_the_head_read_from_the_revision_files_is_alembics() -> None:
    assert migrations.head() == migrations._alembic_head()


async def test_a_start_at_head_neither_imports_alembic_nor_migrates(
    empty_url: str, store: Store
) -> None:
    await store.init()
    start = (
        "import asyncio, sys; from bot.storage import Store\n"
        "async def main():\n"
        f"    store = Store({empty_url!r})\n"
        "    await store.init()\n"
        "    await store.init(migrate=False)\n"
        "    await store.close()\n"
        "asyncio.run(main()); print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", start], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert await store._run(migrations.current, commit=False) == "0003"


async def test_processes_starting_together_migrate_once(store: Store, empty_url: str) -> None:
    others = [Store(empty_url) for _ in range(3)]
    try:
        await asyncio.gather(store.init(), *(s.init() for s in others))
    finally:
        for s in others:
            await s.close()
    assert await store._run(migrations.current, commit=False) == "0003"
    assert await store._run(differences, commit=False) == []


async def test_without_auto_migrate_an_unmigrated_database_is_refused(store: Store) -> None:
    with pytest.raises(migrations.SchemaBehind, match="python -m bot migrate"):
        await store.init(migrate=False)
    await store.init()
    await store.init(migrate=False)  # at head now


async def test_a_database_made_before_migrations_is_taken_over_with_its_rows(
    store: Store,
) -> None:
    """What the former ``create_all`` made: all tables there, no alembic_version."""
    await store._run(metadata.create_all, commit=True)
    state = State(lang="en")
    assert await store.commit(42, state, 0) == []
    await store.init()
    assert await store._run(migrations.current, commit=False) == "0003"
    loaded, version = await store.load(42)
    assert loaded is not None and loaded.lang == "en" and version == 1
    rows = await store._run(
        lambda c: c.execute(select(conversations.c.chat_id)).all(), commit=False
    )
    assert [r.chat_id for r in rows] == [42]


def test_bot_starts_and_answers_on_a_migrated_postgres_database(
    harness: Harness, postgres_db: str
) -> None:
    assert migrate_cli(postgres_db).returncode == 0
    harness.launch(DATABASE_URL=postgres_db, AUTO_MIGRATE="false")
    reply = Chat(harness.stub).send("/start")
    assert WELCOME in reply["text"]


def test_bot_on_a_fresh_sqlite_file_migrates_itself(harness: Harness) -> None:
    """./start.sh on a new machine: no migrate step, AUTO_MIGRATE unset."""
    harness.launch()
    reply = Chat(harness.stub).send("/start")
    assert WELCOME in reply["text"]
    assert harness.db.exists()


def test_bot_refuses_an_unmigrated_postgres_database(harness: Harness, postgres_db: str) -> None:
    """PostgreSQL without AUTO_MIGRATE: migrating is a deployment step, not a side effect."""
    env = harness.env({"DATABASE_URL": postgres_db})
    done = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=harness.tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "python -m bot migrate" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


async def test_upgrading_from_0001_keeps_the_broadcast_in_progress(store: Store) -> None:
    """0002 (delivery leases) on a database at 0001 with a broadcast half sent: its rows
    stay as they were, and the rows left in flight by the old code are taken over."""
    await store._run(lambda conn: command.upgrade(migrations._config(conn), "0001"), commit=True)
    now = dt.datetime.now(dt.UTC)

    def seed(conn: Connection) -> None:
        conn.execute(
            text(
                "INSERT INTO broadcasts (id, template, region, created_by, created_at, status,"
                " total) VALUES (1, 'collection_opens', 'dalate', 900, :now, 'sending', 3)"
            ),
            {"now": now},
        )
        conn.execute(
            text("INSERT INTO broadcast_texts VALUES (1, 'zh_Hans', '缴费开始')"),
        )
        for chat, status in ((11, "sent"), (12, "inflight"), (13, "pending")):
            conn.execute(
                text(
                    "INSERT INTO deliveries (broadcast_id, chat_id, language, status, attempts,"
                    " parts_sent, updated_at) VALUES (1, :chat, 'zh_Hans', :status, :n, 0, :now)"
                ),
                {"chat": chat, "status": status, "n": int(status != "pending"), "now": now},
            )

    await store._run(seed, commit=True)
    await store.init()
    assert await store._run(migrations.current, commit=False) == "0003"
    broadcasts = BroadcastStore(store)
    assert await broadcasts.delivery_status(1) == {
        11: ("sent", 1, None),
        12: ("inflight", 1, None),
        13: ("pending", 0, None),
    }
    # The row the old code left in flight has no lease: it counts as ended.
    claimed = await broadcasts.claim_next(2, owner="new")
    assert [(c.chat_id, c.text) for c in claimed] == [(12, "缴费开始"), (13, "缴费开始")]

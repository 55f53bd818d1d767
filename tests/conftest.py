"""Shared fixtures: the storage tests run on SQLite and on PostgreSQL; the end-to-end tests
launch the real bot against the Bot API stand-in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botapi_stub import BotApiStub
from pg_server import admin, postgres_server
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from test_e2e_bot import BotProcess, Harness


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One throwaway PostgreSQL server for the whole run; tests clean up their rows."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the shared test server (the others' tables are not in it)."""
    name = f"mig_{uuid.uuid4().hex[:12]}"
    server = make_url(postgres_url)
    asyncio.run(admin(postgres_url, f"CREATE DATABASE {name}"))
    yield server.set(database=name).render_as_string(hide_password=False)
    asyncio.run(admin(postgres_url, f"DROP DATABASE {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def harness(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> Iterator[Harness]:
    """One Bot API stand-in and one database file for the real bot processes a test
    launches (tests/test_e2e_bot.py); their output is shown when the test fails."""
    from test_e2e_bot import Harness

    failed_before = request.session.testsfailed
    stub = BotApiStub().start()
    h = Harness(stub, tmp_path)
    try:
        yield h
    finally:
        h.stop_all()
        stub.stop()
        if request.session.testsfailed > failed_before:
            with capsys.disabled():
                print(f"\n===== bot output for {request.node.nodeid}\n{h.logs()}")


@pytest.fixture
def bot(harness: Harness) -> BotProcess:
    """The real bot, polling the stub, ready (setMyCommands done, polling started)."""
    return harness.launch()

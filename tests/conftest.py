"""Session fixtures: the real servers every integration and end-to-end test talks to.

Without DATABASE_URL, NATS_URL, REDIS_URL and TEMPORAL_HOST set, the session starts embedded
PostgreSQL, NATS (JetStream), Valkey and the Temporal dev server on free ports, once; with them set,
it uses those servers instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from saas.common.db import Database
from saas.common.settings import DatabaseSettings
from saas.devstack.servers import EmbeddedStack, StackPorts

ROOT = Path(__file__).resolve().parent.parent
CONNECTION_VARS = ("DATABASE_URL", "NATS_URL", "REDIS_URL", "TEMPORAL_HOST")


@dataclass(frozen=True)
class Stack:
    database_url: str
    nats_url: str
    redis_url: str
    temporal_host: str

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "NATS_URL": self.nats_url,
            "REDIS_URL": self.redis_url,
            "TEMPORAL_HOST": self.temporal_host,
        }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    given = {v: os.environ[v] for v in CONNECTION_VARS if os.environ.get(v)}
    embedded: EmbeddedStack | None = None
    if len(given) < len(CONNECTION_VARS):
        embedded = EmbeddedStack(
            tmp_path_factory.mktemp("stack"),
            StackPorts.ephemeral(),
            temporal_ui=False,
            durable=False,
        )
        missing = {
            "DATABASE_URL": "postgres",
            "NATS_URL": "nats",
            "REDIS_URL": "valkey",
            "TEMPORAL_HOST": "temporal",
        }
        embedded.start(only={server for var, server in missing.items() if var not in given})
    values = {**(embedded.env() if embedded else {}), **given}
    stack = Stack(
        values["DATABASE_URL"], values["NATS_URL"], values["REDIS_URL"], values["TEMPORAL_HOST"]
    )
    saved = {k: os.environ.get(k) for k in (*CONNECTION_VARS, "MIGRATIONS_DIR")}
    os.environ.update(stack.env())
    os.environ["MIGRATIONS_DIR"] = str(ROOT / "migrations")

    from saas.common.commands.migrate import release

    release(lambda _: None)
    try:
        yield stack
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if embedded is not None:
            embedded.stop()


@pytest.fixture
async def db(stack):
    """A database connection pool as the owning services have it (schema owner)."""
    db = Database.from_settings(DatabaseSettings.load())
    yield db
    await db.dispose()


@pytest.fixture
def nats_server(tmp_path):
    """A NATS server of the test's own, which it may stop, start, pause and resume."""
    from tests.support.events import PrivateNats

    server = PrivateNats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()

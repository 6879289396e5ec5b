"""Session fixtures: the real servers every integration and end-to-end test talks to.

Without DATABASE_URL, NATS_URL, REDIS_URL and TEMPORAL_HOST set, the session starts embedded
PostgreSQL, NATS (JetStream), Valkey and the Temporal dev server on free ports, once; with them set,
it uses those servers instead (a given DATABASE_URL must be able to create roles).

The database is set up as in production: the logins are created (`saas db bootstrap-roles`'s
function), migrations run as the migration login, and each service's login has only its rights.
`DATABASE_URL` in the environment is the superuser's (`stack.database_admin_url`), for tests that
make scratch schemas or look at what services wrote; `stack.database_url(login)` is a service's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from saas.common.db import Database
from saas.common.db_roles import MIGRATE
from saas.common.settings import DatabaseSettings
from saas.devstack.database import DatabaseLogins, set_up_logins
from saas.devstack.servers import EmbeddedStack, StackPorts

ROOT = Path(__file__).resolve().parent.parent
CONNECTION_VARS = ("DATABASE_URL", "NATS_URL", "REDIS_URL", "TEMPORAL_HOST")


@dataclass(frozen=True)
class Stack:
    logins: DatabaseLogins
    nats_url: str  # the operators' user: tests may do anything on the bus
    redis_url: str
    temporal_host: str
    nats_urls: dict[str, str] | None = None  # each NATS user's URL (embedded NATS only)

    def nats_url_for(self, user: str) -> str:
        """A service's (or `dev`'s) own NATS URL, with only its permissions."""
        if self.nats_urls is None:
            pytest.skip("the given NATS_URL has no per-service users")
        return self.nats_urls[user]

    @property
    def database_admin_url(self) -> str:
        return self.logins.admin_url

    @property
    def database_urls(self) -> dict[str, str]:
        """Each login's URL, by login name: what a `Supervisor` hands its processes."""
        return self.logins.urls

    def database_url(self, login: str) -> str:
        return self.logins.url(login)

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_admin_url,
            "DATABASE_ADMIN_URL": self.database_admin_url,
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
    saved = {
        k: os.environ.get(k) for k in (*CONNECTION_VARS, "DATABASE_ADMIN_URL", "MIGRATIONS_DIR")
    }
    os.environ["MIGRATIONS_DIR"] = str(ROOT / "migrations")

    from saas.common.commands.migrate import release

    secrets_root = embedded.root if embedded else tmp_path_factory.mktemp("logins")
    logins = set_up_logins(values["DATABASE_URL"], secrets_root)
    nats = embedded.nats_logins() if embedded and "NATS_URL" not in given else None
    stack = Stack(
        logins,
        values["NATS_URL"],
        values["REDIS_URL"],
        values["TEMPORAL_HOST"],
        nats.urls if nats else None,
    )
    os.environ.update(stack.env())
    release(lambda _: None, database_url=logins.url(MIGRATE.name))
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
    """A connection pool as the superuser: scratch schemas, and looking at what services wrote."""
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

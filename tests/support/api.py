"""The real gateway with identity and tenancy behind it, for end-to-end tests over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import httpx

from saas.common.cli import discover_processes
from saas.devstack.servers import free_port
from saas.devstack.supervisor import Child, Supervisor

PASSWORD = "plum-orbit-castle-91"
API = "/api/v1"


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class Api:
    http: httpx.Client  # the gateway's public API
    children: dict[str, Child]
    mail_dir: Path
    supervisor: Supervisor | None = None  # to stop and start a process again

    @property
    def ops(self) -> str:
        """The gateway's ops port: /health, /health/ready, /metrics, /status."""
        return self.children["gateway"].url

    def metrics(self) -> str:
        return httpx.get(self.ops + "/metrics", timeout=10).text

    def mail(self, to: str, kind: str, *, after: int = 0, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for path in sorted(self.mail_dir.glob("*.eml")):
                message = message_from_bytes(path.read_bytes(), policy=policy.default)
                if message["To"] == to and message["X-Saas-Mail-Kind"] == kind:
                    found.append(message)
            if len(found) > after:
                return found[-1]
            assert time.monotonic() < deadline, f"no {kind} mail to {to} after {timeout}s"
            time.sleep(0.1)

    def token_from_mail(self, to: str, kind: str, *, after: int = 0) -> str:
        """The token as a person would copy it from the message's text."""
        body = self.mail(to, kind, after=after).get_content()
        return re.search(r"Token: (\S+)", body).group(1)

    def sign_up(self, email: str | None = None, password: str = PASSWORD) -> str:
        email = email or new_email()
        response = self.http.post(
            f"{API}/auth/register", json={"email": email, "password": password}
        )
        assert response.status_code == 202, response.text
        token = self.token_from_mail(email, "verify_email")
        assert self.http.post(f"{API}/auth/verify-email", json={"token": token}).status_code == 200
        return email

    def login(self, email: str, password: str = PASSWORD) -> dict:
        response = self.http.post(f"{API}/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return response.json()

    def logs(self) -> str:
        return "".join(c.log_path.read_text() for c in self.children.values() if c.log_path)


def running_api(
    stack, tmp_path_factory, names=("identity", "tenancy", "gateway"), **env
) -> Iterator[Api]:
    mail_dir = tmp_path_factory.mktemp("mail")
    environment = {
        **stack.env(),
        "APP_ENV": "test",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "MIGRATIONS_DIR": os.environ["MIGRATIONS_DIR"],
        "MAIL_DIR": str(mail_dir),
        "OUTBOX_POLL_INTERVAL": "0.2",
        "ACCESS_LOG": "all",  # tests search the logs for every request
        # Every request of a test comes from 127.0.0.1: limits a whole suite stays under (the
        # rate-limit tests set their own).
        "RATE_LIMIT_ANONYMOUS": "100000/minute",
        "RATE_LIMIT_AUTH_ADDRESS": "100000/minute",
        "RATE_LIMIT_AUTH_ACCOUNT": "1000/minute",
        **env,
    }
    supervisor = Supervisor(
        environment,
        database_urls=stack.database_urls,
        nats_urls=stack.nats_urls,
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    specs = [s for s in discover_processes() if s.name in names]
    children = supervisor.start(
        specs,
        {s.name: free_port() for s in specs},
        {s.name: free_port() for s in specs if s.public},
    )
    try:
        supervisor.wait_ready(timeout=90)
        by_name = {c.spec.name: c for c in children}
        with httpx.Client(base_url=by_name["gateway"].public_url, timeout=30) as http:
            yield Api(http, by_name, mail_dir, supervisor)
    finally:
        supervisor.stop()


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def make_tenant(api: Api, owner_pair: dict) -> tuple[str, str]:
    """A tenant row as tenancy writes it, and its owner as tenancy's workflow makes it."""
    from sqlalchemy import text

    from saas.common.bus import Bus, BusClient
    from saas.common.contracts.identity import AddOwner, Membership
    from saas.common.db import Database
    from saas.common.settings import DatabaseSettings

    tenant_id, slug = str(uuid.uuid4()), f"acme-{uuid.uuid4().hex[:8]}"
    user_id = api.http.get(f"{API}/users/me", headers=bearer(owner_pair)).json()["id"]

    async def create() -> None:
        db = Database.from_settings(DatabaseSettings.load())
        try:
            async with db.session() as session:
                await session.execute(
                    text(
                        "INSERT INTO public.tenants (id, slug, name, status) "
                        "VALUES (:i, :s, 'Acme', 'ready')"
                    ),
                    {"i": tenant_id, "s": slug},
                )
        finally:
            await db.dispose()
        bus = Bus(os.environ["NATS_URL"], name="tests")
        await bus.connect()
        try:
            await BusClient(bus, timeout=10).request(
                "identity",
                "internal.add_owner",
                AddOwner(tenant_id=tenant_id, user_id=user_id),
                Membership,
            )
        finally:
            await bus.close()

    asyncio.run(create())
    return tenant_id, slug

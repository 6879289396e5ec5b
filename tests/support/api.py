"""The real gateway with identity and tenancy behind it, for end-to-end tests over HTTP."""

from __future__ import annotations

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
    http: httpx.Client
    children: dict[str, Child]
    mail_dir: Path
    supervisor: Supervisor | None = None  # to stop and start a process again

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
        **env,
    }
    supervisor = Supervisor(
        environment,
        database_urls=stack.database_urls,
        nats_urls=stack.nats_urls,
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    specs = [s for s in discover_processes() if s.name in names]
    children = supervisor.start(specs, {s.name: free_port() for s in specs})
    try:
        supervisor.wait_ready(timeout=90)
        by_name = {c.spec.name: c for c in children}
        with httpx.Client(base_url=by_name["gateway"].url, timeout=30) as http:
            yield Api(http, by_name, mail_dir, supervisor)
    finally:
        supervisor.stop()

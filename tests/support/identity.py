"""Helpers for tests of identity: a running identity process, its mail, its events."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from sqlalchemy import text

from saas.common.bus import BusClient
from saas.common.contracts.identity import LoginRequest, RegisterRequest, TokenPair
from saas.common.db import Database
from saas.common.process import ServiceProcess
from saas.identity.deps import Deps
from tests.support.events import stream_bodies

T = TypeVar("T", bound=BaseModel)
PASSWORD = "plum-orbit-castle-91"


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class Identity:
    """A running identity process and a client that calls it as the gateway would."""

    process: ServiceProcess
    deps: Deps
    client: BusClient
    mail_dir: Path
    db: Database

    async def call(
        self,
        operation: str,
        payload: BaseModel | None,
        reply: type[T],
        *,
        token: str | None = None,
        ip: str | None = "192.0.2.10",
        request_id: str | None = None,
    ) -> T:
        return await self.client.request(
            "identity",
            operation,
            payload,
            reply,
            token=token,
            client_ip=ip,
            request_id=request_id,
        )

    async def raw(self, operation: str, body: dict[str, Any], **headers: str) -> bytes:
        msg = await self.client.bus.nc.request(
            f"svc.identity.{operation}", orjson.dumps(body), timeout=10, headers=headers or None
        )
        return msg.data

    async def mail_token(self, to: str, kind: str, *, after: int = 0, timeout: float = 20) -> str:
        """The token of the newest mail of `kind` to `to`, once more than `after` of them exist."""
        deadline = time.monotonic() + timeout
        while True:
            found = mails(self.mail_dir, to, kind)
            if len(found) > after:
                return found[-1]["X-Saas-Token"]
            assert time.monotonic() < deadline, f"no {kind} mail to {to} after {timeout}s"
            await asyncio.sleep(0.1)

    async def signed_up(self, email: str | None = None, password: str = PASSWORD) -> str:
        """Register and verify an account; returns its email."""
        from saas.common.contracts.identity import Accepted, Done, VerifyEmailRequest

        email = email or new_email()
        await self.call("register", RegisterRequest(email=email, password=password), Accepted)
        token = await self.mail_token(email, "verify_email")
        await self.call("verify_email", VerifyEmailRequest(token=token), Done)
        return email

    async def login(
        self, email: str, password: str = PASSWORD, ip: str = "192.0.2.10"
    ) -> TokenPair:
        return await self.call(
            "login", LoginRequest(email=email, password=password), TokenPair, ip=ip
        )


def mails(mail_dir: Path, to: str, kind: str) -> list:
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"] == to and message["X-Saas-Mail-Kind"] == kind:
            found.append(message)
    return found


async def events(
    identity: Identity, type_: str, subject: str | None = None
) -> list[dict[str, Any]]:
    """Identity's events of a type, oldest first: those its relay published (the EVENTS stream)
    and those still pending in its outbox. The outbox is read first: a row gone from it by the
    time the stream is read was acknowledged, so it is in the stream."""
    async with identity.db.session() as session:
        rows = await session.execute(
            text("SELECT body FROM identity.outbox WHERE type = :t ORDER BY seq"), {"t": type_}
        )
        pending = [bytes(body) for body in rows.scalars()]
    published = await stream_bodies(identity.client.bus.js, type_)
    found: dict[str, dict[str, Any]] = {}
    for body in [*published, *pending]:
        event = orjson.loads(body)
        found.setdefault(event["id"], event)
    return [e for e in found.values() if subject is None or e.get("subject") == subject]

"""Helpers for the gateway's edge tests: a Valkey of the test's own, services faked on the real
bus (in a thread with its own event loop, so synchronous tests can block on HTTP meanwhile), and
gateway processes started as `saas dev` starts them."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saas.common.bus import Bus, RequestContext, Responder
from saas.common.bus.requests import Empty
from saas.common.cli import discover_processes
from saas.common.contracts.identity import Jwks, User
from saas.common.lifecycle import TaskTracker
from saas.devstack.servers import free_port
from saas.devstack.supervisor import Child, Supervisor
from tests.support.servers import PrivateServer
from tests.support.tokens import Keys


class PrivateValkey(PrivateServer):
    """A Valkey server of the test's own, which it may stop and start again on the same port."""

    kind = "valkey"
    durable = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.valkey}/0"


class FakeServices:
    """Operations answered on the real bus as if by a service (`svc.<service>.<operation>`)."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.responders: dict[str, Responder] = {}
        self.tasks = TaskTracker()
        self.bus: Bus | None = None

    def operation(self, service: str, name: str, model: type = Empty):
        responder = self.responders.setdefault(service, Responder(service))
        return responder.operation(name, model)

    def _run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> None:
        self.thread.start()

        async def start() -> None:
            self.bus = Bus(self.nats_url, name=f"fake-{uuid.uuid4().hex[:6]}")
            await self.bus.connect()
            for responder in self.responders.values():
                await responder.start(self.bus, self.tasks)

        self._run(start())

    def stop(self) -> None:
        async def stop() -> None:
            for responder in self.responders.values():
                await responder.stop_taking_requests()
            await self.tasks.drain(5)
            if self.bus is not None:
                await self.bus.close()

        self._run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def fake_identity(nats_url: str, keys: Keys, *, delay: Callable[[], float] = lambda: 0.0):
    """Identity as far as the gateway needs it: the JWKS (of `keys`) and `users.me`, which takes
    `delay()` seconds and answers whoever the forwarded token names."""
    services = FakeServices(nats_url)

    @services.operation("identity", "jwks")
    async def jwks(_: Empty, __: RequestContext) -> Jwks:
        return Jwks.model_validate(await keys.jwks())

    @services.operation("identity", "users.me")
    async def me(_: Empty, ctx: RequestContext) -> User:
        await asyncio.sleep(delay())
        return User(
            id=ctx.request_id,  # lets a test see which request was answered
            email="someone@example.com",
            email_verified=True,
            platform_admin=False,
            created_at=datetime.now(UTC),
        )

    return services


@contextmanager
def gateways(stack, tmp_path: Path, count: int = 1, **env: str) -> Iterator[list[Child]]:
    """`count` gateway processes with the session's NATS (each with the gateway's own user)."""
    (spec,) = [s for s in discover_processes() if s.name == "gateway"]
    environment = {
        **stack.env(),
        "APP_ENV": "test",
        "LOG_FORMAT": "json",
        "MIGRATIONS_DIR": os.environ["MIGRATIONS_DIR"],
        **env,
    }
    supervisors = []
    try:
        for n in range(count):
            supervisor = Supervisor(
                environment,
                database_urls=stack.database_urls,
                nats_urls=stack.nats_urls,
                log_dir=tmp_path / f"gateway-{n}",
            )
            supervisors.append(supervisor)
            supervisor.start([spec], {spec.name: free_port()}, {spec.name: free_port()})
        for supervisor in supervisors:
            supervisor.wait_ready(timeout=60)
        yield [s.children[0] for s in supervisors]
    finally:
        for supervisor in supervisors:
            supervisor.stop()


def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send bytes over a real socket and read until the server closes or 64 KiB arrive."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
            if sum(map(len, chunks)) > 65536:
                break
        return b"".join(chunks)

"""The frame every process runs in: resources, ops endpoints, lifespan and graceful shutdown.

A process is an ASGI app served by uvicorn. On SIGTERM, at once: uvicorn stops accepting
connections, and the process stops taking bus requests and runs its drain hooks (a consumer
stops fetching, the Temporal worker stops polling). uvicorn lets in-flight HTTP requests finish
(`SHUTDOWN_TIMEOUT`) and then runs the lifespan's shutdown, where in-flight bus handlers get the
same timeout, what is left is logged by name, the shutdown hooks run, and pools and connections
close.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from redis.asyncio import Redis

from saas.common.bus import Bus, BusClient, RequestContext, Responder
from saas.common.bus.requests import Empty
from saas.common.contracts.system import PingReply
from saas.common.db import Database
from saas.common.health import HealthChecks
from saas.common.lifecycle import TaskTracker
from saas.common.logging import configure_logging, get_logger
from saas.common.metrics import Metrics
from saas.common.settings import Settings

log = get_logger(__name__)

Hook = Callable[["ServiceProcess"], Awaitable[None]]

DATABASE, NATS, REDIS, TEMPORAL = "database", "nats", "redis", "temporal"


class ServiceProcess:
    """One running process of a service: what it connects to and how it starts and stops."""

    def __init__(
        self,
        name: str,
        version: str,
        settings: Settings,
        *,
        needs: tuple[str, ...] = (DATABASE, NATS),
        responder: Responder | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.settings = settings
        self.needs = needs
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.metrics = Metrics()
        self.health = HealthChecks(version=version, timeout=settings.health_check_timeout)
        self.tasks = TaskTracker()
        self.responder = responder
        self.bus: Bus | None = None
        self.client: BusClient | None = None
        self.db: Database | None = None
        self.redis: Redis | None = None
        self.temporal: Any = None
        self._startup: list[Hook] = []
        self._drain: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._draining: asyncio.Task[None] | None = None
        if responder is not None:
            self._add_ping(responder)

    def on_startup(self, hook: Hook) -> Hook:
        self._startup.append(hook)
        return hook

    def on_drain(self, hook: Hook) -> Hook:
        """Run at SIGTERM: stop taking new work (and wait for it, if the hook owns it)."""
        self._drain.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Run after in-flight work has finished: release what the startup hooks took."""
        self._shutdown.append(hook)
        return hook

    def _add_ping(self, responder: Responder) -> None:
        @responder.operation("ping", Empty)
        async def ping(_: Empty, __: RequestContext) -> PingReply:
            return PingReply(
                service=self.name,
                version=self.version,
                instance=self.instance,
                time=datetime.now(UTC),
            )

    async def start(self) -> None:
        s = self.settings
        if DATABASE in self.needs:
            self.db = Database.from_settings(s)
            self.health.add(DATABASE, self.db.ping)
        if NATS in self.needs:
            self.bus = Bus(s.nats_url, name=f"{self.name}@{self.instance}")
            await self.bus.connect()
            self.client = BusClient(self.bus, timeout=s.bus_request_timeout, metrics=self.metrics)
            self.health.add(NATS, self._check_nats)
        if REDIS in self.needs:
            if not s.redis_url:
                raise RuntimeError(f"{self.name} needs REDIS_URL")
            self.redis = Redis.from_url(s.redis_url, socket_timeout=s.health_check_timeout)
            self.health.add(REDIS, self._check_redis)
        if TEMPORAL in self.needs:
            from temporalio.client import (
                Client,  # imported here: only the worker and tenancy pay for it
            )

            self.temporal = await Client.connect(s.temporal_host, namespace=s.temporal_namespace)
            self.health.add(TEMPORAL, self._check_temporal)
        for hook in self._startup:
            await hook(self)
        if self.responder is not None and self.bus is not None:
            await self.responder.start(self.bus, self.tasks, self.metrics)
        log.info("process started", version=self.version)

    def begin_drain(self) -> asyncio.Task[None]:
        """Stop taking new work; idempotent. Called from the signal handler and from `stop`."""
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain_now(), name="drain")
        return self._draining

    async def _drain_now(self) -> None:
        log.info("draining", in_flight=self.tasks.in_flight)
        self.health.draining = True
        if self.responder is not None:
            await self.responder.stop_taking_requests()
        await self._run_hooks(self._drain)

    async def _run_hooks(self, hooks: list[Hook]) -> None:
        for hook in reversed(hooks):
            try:
                await hook(self)
            except Exception:
                log.exception("hook failed", hook=getattr(hook, "__name__", repr(hook)))

    async def stop(self) -> None:
        await self.begin_drain()
        await self.tasks.drain(self.settings.shutdown_timeout)
        await self._run_hooks(self._shutdown)
        if self.bus is not None:
            await self.bus.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.db is not None:
            await self.db.dispose()
        log.info("shutdown complete")

    async def _check_nats(self) -> None:
        if self.bus is None or not self.bus.is_connected:
            raise ConnectionError("not connected")
        await self.bus.nc.flush(timeout=self.settings.health_check_timeout)

    async def _check_redis(self) -> None:
        assert self.redis is not None
        await self.redis.ping()

    async def _check_temporal(self) -> None:
        ok = await self.temporal.service_client.check_health()
        if not ok:
            raise ConnectionError("temporal reports unhealthy")

    @asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def create_app(self, **fastapi_kwargs: Any) -> FastAPI:
        """A FastAPI app with this process's lifespan and its ops endpoints."""
        app = FastAPI(lifespan=self.lifespan, **fastapi_kwargs)
        app.include_router(self.health.router())

        @app.get("/metrics", tags=["operations"], include_in_schema=False)
        async def metrics() -> Response:
            body, content_type = self.metrics.render()
            return Response(body, media_type=content_type)

        app.state.process = self
        return app

    def run(
        self, app: FastAPI | None = None, *, host: str | None = None, port: int | None = None
    ) -> None:
        """Serve until SIGTERM/SIGINT, then shut down gracefully."""
        configure_logging(
            self.name, level=self.settings.log_level, fmt=self.settings.effective_log_format
        )
        config = uvicorn.Config(
            app or self.create_app(),
            host=host or self.settings.ops_host,
            port=self.settings.ops_port if port is None else port,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=self.settings.shutdown_timeout,  # type: ignore[arg-type],
        )
        server = _Server(config, on_exit=self.begin_drain)
        # uvicorn re-raises the signal it caught once it has shut down; with these no-op handlers
        # in place a graceful shutdown ends with exit code 0 instead of death by SIGTERM.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        server.run()
        if not server.started:
            raise SystemExit(3)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the process to stop taking bus work the moment a signal lands."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], object]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        try:
            asyncio.get_running_loop().call_soon(self._on_exit)
        except RuntimeError:  # no loop yet: the lifespan shutdown will drain
            pass

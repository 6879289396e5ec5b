"""The frame every process runs in: resources, ops endpoints, lifespan and graceful shutdown.

A process is an ASGI app served by uvicorn. uvicorn owns the signals: on SIGTERM it stops
accepting connections and lets in-flight HTTP requests finish (`SHUTDOWN_TIMEOUT`), then runs the
lifespan's shutdown, where we stop taking bus requests, let in-flight handlers finish within the
same timeout, run the service's own shutdown hooks, and close pools and connections.
"""

from __future__ import annotations

import os
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
        self._shutdown: list[Hook] = []
        if responder is not None:
            self._add_ping(responder)

    def on_startup(self, hook: Hook) -> Hook:
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        self._shutdown.append(hook)
        return hook

    def _add_ping(self, responder: Responder) -> None:
        @responder.operation("ping", Empty)
        async def ping(_: Empty, __: RequestContext) -> PingReply:
            return PingReply(service=self.name, version=self.version, instance=self.instance, time=datetime.now(UTC))

    async def start(self) -> None:
        s = self.settings
        if DATABASE in self.needs:
            self.db = Database.from_settings(s)
            self.health.add(DATABASE, self.db.ping)
        if NATS in self.needs:
            self.bus = Bus(s.nats_url, name=f"{self.name}@{self.instance}")
            await self.bus.connect()
            self.client = BusClient(self.bus, timeout=s.bus_request_timeout)
            self.health.add(NATS, self._check_nats)
        if REDIS in self.needs:
            if not s.redis_url:
                raise RuntimeError(f"{self.name} needs REDIS_URL")
            self.redis = Redis.from_url(s.redis_url, socket_timeout=s.health_check_timeout)
            self.health.add(REDIS, self._check_redis)
        if TEMPORAL in self.needs:
            from temporalio.client import Client  # imported here: only the worker and tenancy pay for it

            self.temporal = await Client.connect(s.temporal_host, namespace=s.temporal_namespace)
            self.health.add(TEMPORAL, self._check_temporal)
        for hook in self._startup:
            await hook(self)
        if self.responder is not None and self.bus is not None:
            await self.responder.start(self.bus, self.tasks, self.metrics)
        log.info("process started", version=self.version)

    async def stop(self) -> None:
        log.info("shutting down", in_flight=self.tasks.in_flight)
        self.health.draining = True
        if self.responder is not None:
            await self.responder.stop_taking_requests()
        for hook in reversed(self._shutdown):
            try:
                await hook(self)
            except Exception:
                log.exception("shutdown hook failed", hook=getattr(hook, "__name__", repr(hook)))
        await self.tasks.drain(self.settings.shutdown_timeout)
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

    def run(self, app: FastAPI | None = None, *, host: str | None = None, port: int | None = None) -> None:
        """Serve until SIGTERM/SIGINT, then shut down gracefully."""
        configure_logging(self.name, level=self.settings.log_level, fmt=self.settings.effective_log_format)
        config = uvicorn.Config(
            app or self.create_app(),
            host=host or self.settings.ops_host,
            port=self.settings.ops_port if port is None else port,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=self.settings.shutdown_timeout,  # type: ignore[arg-type],
        )
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            raise SystemExit(3)

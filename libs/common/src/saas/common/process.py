"""The frame every process runs in: its connections, its components, ops endpoints and shutdown.

A process is an ASGI app served by uvicorn. What it connects to follows from its settings: a
process whose settings include `DatabaseSettings` has `process.db`, `BusSettings` gives
`process.bus` (and a responder for `svc.<name>.*`), `RedisSettings` with a URL gives
`process.redis`, `TemporalSettings` gives `process.temporal`. Each becomes a readiness check.
Background work is a `Component` added in one line where the process is wired.

A process may also serve a public app (the gateway's API) on a listener of its own
(`serve_public`), in the same event loop: the ops port stays inside the cluster, the public one
faces clients, and neither's traffic queues behind the other's.

Life of a process:

    start      ops port bound at once: /health answers, /health/ready says "starting";
               then the public port, if any
               connect NATS, Temporal (each retried with backoff until it answers)
               start each component in the order added (retried likewise)
               start the responder: requests are taken last
               ready
    SIGTERM    readiness turns "draining" first (load balancers stop sending); the responder
               stops taking requests; every component drains (concurrently)
    listeners  after DRAIN_DELAY seconds the public port stops accepting and its in-flight
               requests finish (within SHUTDOWN_TIMEOUT); then the ops port does the same, so
               probes see "draining" until the end
    in flight  bus handlers get what is left of SHUTDOWN_TIMEOUT, and what still runs is
               named in the log and cancelled
    stop       components stop in reverse order (the relay publishes what the last requests wrote)
    close      Redis, Temporal, NATS, the database pool: each bounded, errors logged, never raised

SIGTERM at any moment, start-up included, takes this path: a start that has not finished is
cancelled and only what had started is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn
from fastapi import FastAPI, Response
from redis.asyncio import Redis

from saas.common.bus import Bus, BusClient, RequestContext, Responder
from saas.common.bus.requests import Empty
from saas.common.cli import ProcessSpec
from saas.common.components import Component
from saas.common.contracts.system import PingReply
from saas.common.db import Database
from saas.common.health import HealthChecks
from saas.common.lifecycle import DaemonExecutor, TaskTracker, backoff
from saas.common.logging import configure_logging, get_logger
from saas.common.metrics import Metrics
from saas.common.settings import (
    BusSettings,
    DatabaseSettings,
    EventSettings,
    RedisSettings,
    Settings,
    TemporalSettings,
    TokenSettings,
)
from saas.common.tokens import JWKS_OPERATION, JWKS_SERVICE, FetchJwks, TokenPolicy, TokenVerifier

if TYPE_CHECKING:  # the Temporal SDK is imported only by processes that use it
    from saas.common.temporal import Temporal

log = get_logger(__name__)

R = TypeVar("R")
C = TypeVar("C", bound=Component)


class MissingResource(RuntimeError):
    """Asked for a connection the process's settings do not include."""


@dataclass(frozen=True)
class ServerOptions:
    """How the process serves HTTP: uvicorn's event loop and HTTP protocol (a name or a class).

    The default is the standard library's loop and h11, which every process has; a process that
    serves heavy traffic (the gateway) opts into uvloop and httptools."""

    loop: str = "asyncio"
    http: str | type = "h11"


@dataclass(frozen=True)
class PublicListener:
    """A public ASGI app on a port of its own (`ServiceProcess.serve_public`)."""

    app: Any
    host: str
    port: int


class ServiceProcess:
    """One running process of a service: what it connects to, what it runs, how it stops."""

    def __init__(self, process: ProcessSpec | str, version: str, settings: Settings) -> None:
        """`process` is the spec the service declares (its name and default ops port), or a name."""
        if isinstance(process, ProcessSpec):
            self.name, self.default_port = process.name, process.default_port
        else:
            self.name, self.default_port = process, 0
        self.version = version
        self.settings = settings
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.metrics = Metrics()
        self.health = HealthChecks(version=version, timeout=settings.health_check_timeout)
        self.tasks = TaskTracker()
        self._components: list[Component] = []
        self._started: list[Component] = []
        self._starting: asyncio.Task[None] | None = None
        self._draining: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._db: Database | None = None
        self._bus: Bus | None = None
        self._client: BusClient | None = None
        self._redis: Redis | None = None
        self._temporal: Temporal | None = None
        self._responder: Responder | None = None
        self.app: FastAPI | None = None
        self.public: PublicListener | None = None
        self.server = ServerOptions()
        self._tokens: TokenVerifier | None = None
        self._open_resources(settings)

    # -- resources, from the settings' groups ---------------------------------------------------
    def _open_resources(self, s: Settings) -> None:
        """Create (not yet connect) what the settings describe, and a readiness check for each."""
        if isinstance(s, DatabaseSettings):
            self._db = Database.from_settings(s, application_name=self.name)
            self.health.add("database", self._db.ping)
            self._export_pool_usage(self._db, s.db_pool_size + s.db_max_overflow)
        if isinstance(s, BusSettings):
            self._bus = Bus(
                s.nats_url, name=f"{self.name}@{self.instance}", tls_ca_file=s.nats_tls_ca_file
            )
            self._client = BusClient(self._bus, timeout=s.bus_request_timeout, metrics=self.metrics)
            self.health.add("nats", self._bus.check)
            self.health.add_liveness("nats", lambda: self._bus is None or self._bus.alive)
            self._responder = Responder(self.name)
            self._add_ping(self._responder)
        if isinstance(s, TokenSettings) and self._client is not None:
            policy = TokenPolicy(s.jwt_issuer, s.jwt_audience, leeway=s.jwt_leeway)
            self._tokens = TokenVerifier(self._jwks_over_the_bus, policy)
        if isinstance(s, EventSettings) and self._bus is not None:
            from saas.common.events.stream import StreamCheck

            self._components.append(StreamCheck(self._bus, s, self.metrics))
        if isinstance(s, RedisSettings) and s.redis_url:
            self._redis = Redis.from_url(s.redis_url, socket_timeout=s.health_check_timeout)
            self.health.add("redis", self._redis.ping)
        if isinstance(s, TemporalSettings):
            from saas.common.temporal import Temporal

            self._temporal = Temporal(
                s.temporal_host, s.temporal_namespace, metrics_registry=self.metrics.registry
            )
            self.health.add("temporal", self._temporal.check)

    def _export_pool_usage(self, db: Database, capacity: int) -> None:
        """`database_connection_pool_usage`: the share of the pool's connections in use (0 to 1);
        near 1, requests start waiting for a connection (alerted over 0.8)."""
        in_use = self.metrics.gauge(
            "database_connection_pool_usage", "Share of the pool's connections checked out"
        )
        in_use.set_function(lambda: db.engine.pool.checkedout() / capacity)  # type: ignore[attr-defined]
        size = self.metrics.gauge("database_connection_pool_size", "Connections the pool may open")
        size.set(capacity)

    def _need(self, resource: R | None, what: str, group: type[Settings]) -> R:
        if resource is None:
            raise MissingResource(
                f"{self.name} has no {what}: its settings do not include {group.__name__}"
            )
        return resource

    @property
    def db(self) -> Database:
        return self._need(self._db, "database", DatabaseSettings)

    @property
    def bus(self) -> Bus:
        return self._need(self._bus, "NATS connection", BusSettings)

    @property
    def client(self) -> BusClient:
        return self._need(self._client, "bus client", BusSettings)

    @property
    def responder(self) -> Responder:
        """The process's `svc.<name>.*` operations: register handlers with `@responder.operation`."""
        return self._need(self._responder, "responder", BusSettings)

    @property
    def redis(self) -> Redis:
        return self._need(self._redis, "Redis connection (REDIS_URL)", RedisSettings)

    @property
    def has_redis(self) -> bool:
        return self._redis is not None

    @property
    def tokens(self) -> TokenVerifier:
        """Verifies access tokens (the responder hands it to every request's context)."""
        return self._need(self._tokens, "token verifier", TokenSettings)

    def use_jwks_source(self, fetch: FetchJwks) -> None:
        """Where the keys come from, if not from identity over the bus (identity itself)."""
        self.tokens.use_source(fetch)

    async def _jwks_over_the_bus(self) -> dict[str, Any]:
        from saas.common.contracts.identity import Jwks

        reply = await self.client.request(JWKS_SERVICE, JWKS_OPERATION, Empty(), Jwks)
        return reply.model_dump()

    @property
    def temporal(self) -> Temporal:
        return self._need(self._temporal, "Temporal connection", TemporalSettings)

    def _add_ping(self, responder: Responder) -> None:
        @responder.operation("ping", Empty)
        async def ping(_: Empty, __: RequestContext) -> PingReply:
            return PingReply(
                service=self.name,
                version=self.version,
                instance=self.instance,
                time=datetime.now(UTC),
            )

    # -- components -----------------------------------------------------------------------------
    def add(self, component: C) -> C:
        """Run `component` in this process (see `saas.common.components`). Returns it."""
        if self._starting is not None:
            raise RuntimeError("components are added while wiring, before the process starts")
        self._components.append(component)
        return component

    @property
    def components(self) -> list[Component]:
        return list(self._components)

    # -- start ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and start everything, each step retried with backoff until it succeeds."""
        if self._db is not None and isinstance(self.settings, DatabaseSettings):
            self._warming = asyncio.get_running_loop().create_task(
                self._warm_pool(self._db, self.settings), name="warm database pool"
            )
        if self._bus is not None:
            await self._until_done("nats", self._bus.connect)
        if self._temporal is not None:
            await self._until_done("temporal", self._temporal.connect)
        for component in self._components:
            await self._until_done(component.name, component.start)
            self._started.append(component)
        if self._responder is not None and self._bus is not None:
            responder, bus = self._responder, self._bus
            await self._until_done(
                "responder", lambda: responder.start(bus, self.tasks, self.metrics, self._tokens)
            )
        settle_heap()
        self.health.started = True
        log.info("process started", version=self.version)

    @property
    def warming(self) -> asyncio.Task[None] | None:
        """The opening of the database pool's first connections, beside the start-up steps."""
        return self._warming

    @staticmethod
    async def _warm_pool(db: Database, settings: DatabaseSettings) -> None:
        """Best effort, beside the start-up steps: a database that is not there yet is waited for
        by the readiness check, and the pool then opens connections as work needs them."""
        wanted = settings.db_pool_size if settings.db_pool_min is None else settings.db_pool_min
        wanted = min(wanted, settings.db_pool_size)
        if wanted <= 0:
            return
        try:
            opened = await db.warm(wanted)
        except Exception as exc:
            log.warning("could not open the database pool's connections", error=repr(exc))
        else:
            log.info("database pool opened", connections=opened)

    async def _until_done(self, step: str, action: Callable[[], Awaitable[Any]]) -> None:
        attempt = 0
        self.health.waiting_for = step
        while True:
            try:
                await action()
            except Exception as exc:
                attempt += 1
                delay = backoff(attempt, first=0.2, cap=5.0)
                self.health.waiting_for = f"{step}: {exc!r}"[:300]
                log.warning(
                    "start-up step failed; retrying",
                    step=step,
                    attempt=attempt,
                    error=repr(exc),
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay)
            else:
                self.health.waiting_for = None
                return

    def begin_start(self) -> asyncio.Task[None]:
        """Start in the background, so the ops port answers while dependencies come up."""
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self.start(), name="start")
            self._starting.add_done_callback(_log_start_failure)
        return self._starting

    # -- drain and stop -------------------------------------------------------------------------
    def begin_drain(self) -> asyncio.Task[None]:
        """Stop taking new work; idempotent. Called from the signal handler and from `stop`."""
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain_now(), name="drain")
        return self._draining

    async def _drain_now(self) -> None:
        log.info("draining", in_flight=self.tasks.in_flight)
        self.health.draining = True
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()  # SIGTERM during start-up: what had started is stopped below
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._responder is not None:
            await self._responder.stop_taking_requests()
        await asyncio.gather(*(self._bounded(c.name, c.drain()) for c in reversed(self._started)))

    async def _bounded(self, what: str, work: Awaitable[Any]) -> None:
        """Run a shutdown step within the budget; log, never raise."""
        try:
            await asyncio.wait_for(work, timeout=self.settings.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown step overran its budget and was cancelled", step=what)
        except Exception as exc:
            log.warning("shutdown step failed", step=what, error=repr(exc))

    async def stop(self) -> None:
        await self.begin_drain()
        await self.tasks.drain(self.settings.shutdown_timeout)
        for component in reversed(self._started):
            await self._bounded(component.name, component.stop())
        self._started.clear()
        closing: list[tuple[str, Awaitable[Any]]] = []
        if self._redis is not None:
            closing.append(("redis", self._redis.aclose()))
        if self._temporal is not None:
            closing.append(("temporal", self._temporal.close()))
        if self._bus is not None:
            closing.append(("nats", self._bus.close()))
        if self._warming is not None and not self._warming.done():
            # Let connections being opened arrive and go back to the pool (cancelled half-way,
            # one would be left for the garbage collector); a database that hangs is given up on.
            await asyncio.wait({self._warming}, timeout=min(2.0, self.settings.shutdown_timeout))
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        if self._db is not None:
            closing.append(("database", self._db.dispose()))
        for what, work in closing:
            await self._bounded(what, work)
        log.info("shutdown complete")

    # -- the ASGI app ---------------------------------------------------------------------------
    @asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        asyncio.get_running_loop().set_default_executor(DaemonExecutor())
        self.begin_start()
        try:
            yield
        finally:
            await self.stop()

    def create_app(self, **fastapi_kwargs: Any) -> FastAPI:
        """The process's FastAPI app, with its lifespan and ops endpoints; `run` serves it. The
        gateway adds its public API to it."""
        app = FastAPI(lifespan=self.lifespan, **fastapi_kwargs)
        app.include_router(self.health.router())

        @app.get("/metrics", tags=["operations"], include_in_schema=False)
        async def metrics() -> Response:
            body, content_type = self.metrics.render()
            return Response(body, media_type=content_type)

        app.state.process = self
        self.app = app
        return app

    def serve_public(self, app: Any, host: str, port: int) -> None:
        """Serve `app` on host:port besides the ops endpoints, in the same event loop. It is
        drained before the ops port closes, and the process's start and stop stay with the ops
        app's lifespan."""
        if hasattr(app, "state"):
            app.state.process = self
        self.public = PublicListener(app, host, port)

    def _ops_port(self) -> int:
        return self.settings.ops_port if self.settings.ops_port is not None else self.default_port

    def _config(self, app: Any, host: str, port: int, *, lifespan: str) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan=lifespan,
            loop=self.server.loop,
            http=self.server.http,  # type: ignore[arg-type]
            log_config=None,
            access_log=False,
            # The client's address is the peer's: a forwarded one is believed only from proxies
            # the process is told to trust (the gateway's TRUSTED_PROXIES), never by default.
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=self.settings.shutdown_timeout,  # type: ignore[arg-type]
        )

    def run(self) -> None:
        """Serve the ops app on OPS_HOST:OPS_PORT (and the public app, if any, on its own port)
        until SIGTERM/SIGINT, then shut down gracefully. Exits 3 when a port cannot be bound."""
        configure_logging(
            self.name, level=self.settings.log_level, fmt=self.settings.effective_log_format
        )
        ops_config = self._config(
            self.app or self.create_app(), self.settings.ops_host, self._ops_port(), lifespan="on"
        )
        listeners = [_Server(ops_config)]
        if self.public is not None:
            p = self.public
            listeners.append(_Server(self._config(p.app, p.host, p.port, lifespan="off")))
        with asyncio.Runner(loop_factory=ops_config.get_loop_factory()) as runner:
            started = runner.run(self._serve(listeners))
        if not started:
            raise SystemExit(3)

    async def _serve(self, listeners: list[_Server]) -> bool:
        """Bind every listener in order (ops first), wait for a signal, then drain: readiness
        false at once, listeners closed in reverse order after DRAIN_DELAY. The ops listener's
        lifespan starts and stops the process. True when every listener had started."""
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()

        def on_signal() -> None:
            if signalled.is_set():  # a second signal: stop waiting for in-flight requests
                for server in listeners:
                    server.force_exit = True
            signalled.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        running: list[tuple[_Server, asyncio.Task[None]]] = []
        self.health.listening = False  # ready only once every port takes connections
        try:
            for server in listeners:
                task = loop.create_task(server.serve_caught(), name=f"listener:{server.port}")
                running.append((server, task))
                if not await server.wait_started(task):
                    return False
            self.health.listening = True
            ended = [t for _, t in running]
            waiter = loop.create_task(signalled.wait())
            await asyncio.wait([waiter, *ended], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            log.info("signal received: draining" if signalled.is_set() else "a listener stopped")
            self.begin_drain()  # readiness turns false before any port stops accepting
            if self.settings.drain_delay and signalled.is_set():
                await asyncio.sleep(self.settings.drain_delay)
            return True
        finally:
            for server, task in reversed(running):
                server.should_exit = True
                await asyncio.gather(task, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


# Collect young objects after this many more container allocations than deallocations (Python's
# default is 700): a consumer's batch of 500 events allocates tens of thousands of short-lived
# objects, nearly all freed by reference counting, and collecting every 700 of them cost the
# audit consumer a tenth of its time.
GC_THRESHOLD = (20_000, 20, 20)


def settle_heap() -> None:
    """Once started: what imports and start-up built (modules, models, routes, connections) lives
    as long as the process, so it leaves the collector's view (`gc.freeze`), and collections come
    less often. Without this, each full collection walked the whole heap (about 90 ms in the
    audit process; in the gateway two per 20,000 requests took 0.2 s each, and every request in
    flight waited for them)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _log_start_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("start-up failed", error=repr(task.exception()))


class _Server(uvicorn.Server):
    """uvicorn's server as one listener among others: the process handles signals itself (one
    handler for every listener, so the drain order is the process's), and a port that cannot be
    bound is reported instead of exiting the interpreter from inside the loop."""

    @property
    def port(self) -> int:
        return self.config.port

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve_caught(self) -> None:
        try:
            await self.serve()
        except SystemExit:  # uvicorn's way of saying the port could not be bound (logged)
            pass

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._bound().set()

    def _bound(self) -> asyncio.Event:
        if not hasattr(self, "_bound_event"):
            self._bound_event = asyncio.Event()
        return self._bound_event

    async def wait_started(self, task: asyncio.Task[None]) -> bool:
        """Until the port is bound (True) or the listener has ended without binding (False)."""
        bound = asyncio.ensure_future(self._bound().wait())
        await asyncio.wait([bound, task], return_when=asyncio.FIRST_COMPLETED)
        bound.cancel()
        return self.started and not task.done()

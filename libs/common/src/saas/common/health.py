"""Health and readiness: `/health` says the process is alive, `/health/ready` checks each dependency.

Liveness (`/health`) fails only for what a restart would fix: a client that can no longer heal
(its `alive` signal is false). A dependency that is down is a readiness matter, never liveness:
restarting every pod because the database is away helps nobody.

Readiness is false while the process starts (its dependencies may not answer yet: the body says
what it waits for), when a required dependency fails, and from the moment it starts draining.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from saas.common.logging import get_logger
from saas.common.redact import describe

log = get_logger(__name__)

Check = Callable[[], Awaitable[None]]
Alive = Callable[[], bool]


@dataclass
class HealthChecks:
    """Named dependency checks; a failing required one makes the process not ready."""

    version: str
    timeout: float = 2.0
    checks: dict[str, tuple[Check, bool]] = field(default_factory=dict)
    liveness: dict[str, Alive] = field(default_factory=dict)
    started: bool = False
    listening: bool = True  # false until every port of the process is bound (the public one last)
    draining: bool = False
    waiting_for: str | None = None  # the start-up step being retried, and why

    def add(self, name: str, check: Check, *, required: bool = True) -> None:
        self.checks[name] = (check, required)

    def add_liveness(self, name: str, alive: Alive) -> None:
        self.liveness[name] = alive

    def dead(self) -> list[str]:
        """What makes this process worth restarting (empty when it is alive)."""
        return [name for name, alive in self.liveness.items() if not alive()]

    async def _run(self, name: str, check: Check) -> tuple[str, str | None]:
        try:
            await asyncio.wait_for(check(), timeout=self.timeout)
            return name, None
        except TimeoutError:
            return name, f"no answer within {self.timeout:g}s"
        except Exception as exc:  # a check reports any failure, it never raises
            return name, describe(exc)

    async def readiness(self) -> tuple[bool, dict[str, object]]:
        results = await asyncio.gather(*(self._run(n, c) for n, (c, _) in self.checks.items()))
        body: dict[str, object] = {}
        failing: dict[str, str] = {}
        ready = self.started and self.listening and not self.draining
        for name, error in results:
            body[name] = "connected" if error is None else "disconnected"
            if error is not None:
                failing[name] = error
                if self.checks[name][1]:
                    ready = False
        if self.draining:
            status = "draining"
        elif not (self.started and self.listening):
            status = "starting"
        else:
            status = "ready" if ready else "not_ready"
        doc: dict[str, object] = {"status": status, **body}
        if not self.started and self.waiting_for:
            doc["waiting_for"] = self.waiting_for
        if failing:
            doc["errors"] = failing
            log.warning("readiness check failed", errors=failing)
        return ready, doc

    def router(self, *, public: bool = False) -> APIRouter:
        """`/health` and `/health/ready`. A `public` router (the gateway's API port, for load
        balancers) says the same statuses without the error texts, which may name hosts."""
        router = APIRouter(tags=["operations"], include_in_schema=not public)
        hidden = ("errors", "waiting_for", "dead") if public else ()

        @router.get("/health")
        async def health() -> Response:
            dead = self.dead()
            if dead:
                log.error("liveness check failed", dead=dead)
                body = {"status": "unhealthy", "version": self.version, "dead": dead}
                return JSONResponse(_without(body, hidden), status_code=503)
            return JSONResponse({"status": "healthy", "version": self.version})

        @router.get("/health/ready")
        async def ready() -> Response:
            ok, doc = await self.readiness()
            return JSONResponse(_without(doc, hidden), status_code=200 if ok else 503)

        return router


def _without(doc: dict[str, object], keys: tuple[str, ...]) -> dict[str, object]:
    return {key: value for key, value in doc.items() if key not in keys}

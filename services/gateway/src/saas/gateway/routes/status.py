"""`GET /api/v1/status`: asks every service over NATS and reports version and round-trip time."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from saas.common.bus.requests import Empty
from saas.common.contracts.system import PingReply
from saas.common.errors import ServiceError
from saas.gateway.dependencies import BusClientDep, SettingsDep
from saas.gateway.routes import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["status"])

SERVICES = ("identity", "tenancy", "audit", "tenancy-worker")


class ServiceStatus(BaseModel):
    status: Literal["up", "down"]
    version: str | None = None
    instance: str | None = None
    rtt_ms: float | None = None
    error: str | None = None
    message: str | None = None


class StatusReport(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    services: dict[str, ServiceStatus]


@router.get("/status", response_model=StatusReport)
async def status(request: Request, client: BusClientDep, settings: SettingsDep) -> StatusReport:
    request_id = request.state.request_id

    async def ask(service: str) -> tuple[str, ServiceStatus]:
        started = time.perf_counter()
        try:
            reply = await client.request(
                service,
                "ping",
                Empty(),
                PingReply,
                request_id=request_id,
                timeout=settings.status_timeout,
            )
        except ServiceError as exc:
            return service, ServiceStatus(status="down", error=exc.code.value, message=exc.message)
        rtt = round((time.perf_counter() - started) * 1000, 3)
        return service, ServiceStatus(
            status="up", version=reply.version, instance=reply.instance, rtt_ms=rtt
        )

    results = dict(await asyncio.gather(*(ask(s) for s in SERVICES)))
    overall = "ok" if all(r.status == "up" for r in results.values()) else "degraded"
    return StatusReport(status=overall, version=request.app.version, services=results)

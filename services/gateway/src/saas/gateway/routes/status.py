"""Whether the services answer: `GET /api/v1/status` for anyone, `GET /status` on the ops port
for operators.

Both ask every service over NATS (`svc.<service>.ping`) at once. The public view says only
whether each is up; host names, process ids, round trips and error texts are for operators, so
they are only in the ops port's view, which never faces clients.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from saas.common.bus import BusClient
from saas.common.bus.requests import Empty
from saas.common.contracts.system import PingReply
from saas.common.errors import ServiceError
from saas.gateway import __version__
from saas.gateway.dependencies import BusClientDep, SettingsDep
from saas.gateway.problems import problems
from saas.gateway.routes import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["status"])
ops_router = APIRouter(tags=["operations"])

SERVICES = ("identity", "tenancy", "audit", "tenancy-worker")


class ServiceStatus(BaseModel):
    status: Literal["up", "down"]


class StatusReport(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    services: dict[str, ServiceStatus]


class ServiceDetail(ServiceStatus):
    version: str | None = None
    instance: str | None = None  # host:pid of the replica that answered
    rtt_ms: float | None = None
    error: str | None = None
    message: str | None = None


class DetailedStatus(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    services: dict[str, ServiceDetail]


async def ask_every_service(
    client: BusClient, request_id: str, timeout: float
) -> dict[str, ServiceDetail]:
    async def ask(service: str) -> tuple[str, ServiceDetail]:
        started = time.perf_counter()
        try:
            reply = await client.request(
                service, "ping", Empty(), PingReply, request_id=request_id, timeout=timeout
            )
        except ServiceError as exc:
            return service, ServiceDetail(status="down", error=exc.code.value, message=exc.message)
        rtt = round((time.perf_counter() - started) * 1000, 3)
        return service, ServiceDetail(
            status="up", version=reply.version, instance=reply.instance, rtt_ms=rtt
        )

    return dict(await asyncio.gather(*(ask(s) for s in SERVICES)))


def _overall(services: dict[str, ServiceDetail]) -> Literal["ok", "degraded"]:
    return "ok" if all(s.status == "up" for s in services.values()) else "degraded"


@router.get("/status", response_model=StatusReport, responses=problems())
async def status(request: Request, client: BusClientDep, settings: SettingsDep) -> StatusReport:
    """Whether each service answers over the bus."""
    found = await ask_every_service(client, request.state.request_id, settings.status_timeout)
    return StatusReport(
        status=_overall(found),
        version=__version__,
        services={name: ServiceStatus(status=s.status) for name, s in found.items()},
    )


@ops_router.get("/status", response_model=DetailedStatus)
async def detailed_status(
    request: Request, client: BusClientDep, settings: SettingsDep
) -> DetailedStatus:
    """Each service's version, the replica that answered and the round trip (operators only)."""
    request_id = getattr(request.state, "request_id", None) or "ops-status"
    found = await ask_every_service(client, request_id, settings.status_timeout)
    return DetailedStatus(status=_overall(found), version=__version__, services=found)

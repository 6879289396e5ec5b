"""Route dependencies as `Annotated` aliases, so route signatures read like sentences."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from saas.common.bus import BusClient
from saas.common.process import ServiceProcess
from saas.gateway.settings import GatewaySettings


def get_process(request: Request) -> ServiceProcess:
    return request.app.state.process


def get_bus_client(request: Request) -> BusClient:
    return get_process(request).client


def get_settings(request: Request) -> GatewaySettings:
    return get_process(request).settings  # type: ignore[return-value]


BusClientDep = Annotated[BusClient, Depends(get_bus_client)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]

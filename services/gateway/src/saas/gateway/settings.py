"""Gateway settings."""

from __future__ import annotations

from pydantic import Field

from saas.common.settings import Settings

SERVICE = "gateway"


class GatewaySettings(Settings):
    service_name: str = SERVICE
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)
    status_timeout: float = Field(
        default=2.0, gt=0, description="seconds each service gets to answer /api/v1/status"
    )

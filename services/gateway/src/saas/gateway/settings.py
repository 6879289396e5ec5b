"""Gateway settings: the bus, Redis (rate limiting), the public HTTP surface and what a valid
access token is."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from saas.common.settings import BusSettings, HttpSettings, RedisSettings, TokenSettings


class GatewaySettings(BusSettings, RedisSettings, HttpSettings, TokenSettings):
    # The API and the ops endpoints share one port: GATEWAY_HOST/GATEWAY_PORT, as operators know
    # them (OPS_HOST/OPS_PORT are accepted too).
    ops_host: str = Field(
        default="127.0.0.1", validation_alias=AliasChoices("gateway_host", "ops_host")
    )
    ops_port: int | None = Field(
        default=None, ge=0, le=65535, validation_alias=AliasChoices("gateway_port", "ops_port")
    )
    status_timeout: float = Field(
        default=2.0, gt=0, description="seconds each service gets to answer /api/v1/status"
    )

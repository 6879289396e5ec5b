"""Gateway settings: the bus, Redis (rate limiting), the public HTTP surface, what a valid
access token is, and the edge: its two ports, request hygiene, trusted proxies and rate limits."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode

from saas.common.settings import BusSettings, HttpSettings, RedisSettings, TokenSettings
from saas.gateway.ratelimit.policy import parse_rate

# What to do when Redis cannot be reached: limit in this process only, let every request through,
# or refuse (503).
Fallback = Literal["local", "allow", "deny"]


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class GatewaySettings(BusSettings, RedisSettings, HttpSettings, TokenSettings):
    # The public API listens here; /health, /health/ready, /metrics and the detailed status on
    # OPS_HOST/OPS_PORT (8005 in development), which never faces clients.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)
    # GATEWAY_OPS_PORT first: the one image sets OPS_PORT for every service and this for the
    # gateway, whose API has OPS_PORT's usual port (8080).
    ops_port: int | None = Field(
        default=None, ge=0, le=65535, validation_alias=AliasChoices("gateway_ops_port", "ops_port")
    )
    status_timeout: float = Field(
        default=2.0, gt=0, description="seconds each service gets to answer /api/v1/status"
    )

    # -- request hygiene ------------------------------------------------------------------------
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="413 beyond this")
    max_header_bytes: int = Field(
        default=32 * 1024, ge=4096, le=1024 * 1024, description="431 beyond this (request head)"
    )
    request_timeout: float = Field(
        default=10.0, gt=0, description="seconds before a request is answered 504"
    )
    hsts_max_age: int = Field(
        default=31_536_000,
        ge=0,
        description="Strict-Transport-Security max-age for requests that came over TLS; 0: none",
    )
    access_log: Literal["all", "errors", "off"] = Field(
        default="errors",
        description="a log line for every request, or only for those answered 4xx/5xx or slower "
        "than SLOW_REQUEST_SECONDS (every request is in api_request_duration_seconds anyway)",
    )
    slow_request_seconds: float = Field(default=1.0, gt=0)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs of proxies whose X-Forwarded-For is believed (comma-separated)",
    )

    # -- rate limits: "<count>/<period>", the period a number of seconds or second|minute|hour|day
    rate_limit_enabled: bool = True
    rate_limit_anonymous: str = Field(default="300/minute", description="per client address")
    rate_limit_user: str = Field(default="600/minute", description="per authenticated user")
    rate_limit_tenant: str = Field(default="3000/minute", description="per tenant, all users")
    rate_limit_auth_address: str = Field(
        default="30/minute", description="register, login, password reset: per client address"
    )
    rate_limit_auth_account: str = Field(
        default="10/minute", description="register, login, password reset: per email address"
    )
    rate_limit_fallback: Fallback = Field(
        default="local", description="general routes while Redis is unreachable"
    )
    rate_limit_auth_fallback: Fallback = Field(
        default="deny", description="auth routes while Redis is unreachable"
    )
    rate_limit_redis_timeout: float = Field(
        default=0.25, gt=0, le=5, description="seconds a rate-limit round trip may take"
    )
    rate_limit_retry_interval: float = Field(
        default=1.0, gt=0, le=60, description="seconds between tries of a Redis that failed"
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # raises ValueError, naming the entry
        return value

    @field_validator(
        "rate_limit_anonymous",
        "rate_limit_user",
        "rate_limit_tenant",
        "rate_limit_auth_address",
        "rate_limit_auth_account",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    def production_checks(self) -> list[str]:
        if not self.rate_limit_enabled:
            return ["RATE_LIMIT_ENABLED is false: the public API has no rate limits"]
        return []

"""Wires the gateway: the public API on its own port, the ops endpoints on the frame's.

A request to the API passes, outermost first:

    bounded HTTP protocol     request line and headers over MAX_HEADER_BYTES: 431, nothing parsed on
    RequestContextMiddleware  request id, client address (trusted proxies), log context, security
                              headers, api_request_duration_seconds
    CORSMiddleware            CORS_ORIGINS (so even a 429 is readable by a browser client)
    HygieneMiddleware         body over MAX_BODY_BYTES: 413; not answered in REQUEST_TIMEOUT: 504
    RateLimitMiddleware       one Redis round trip; 429 (or 503 for auth routes while Redis is away)
    FastAPI                   routes; every error a problem document
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from saas.common.components import Component
from saas.common.process import ServerOptions, ServiceProcess
from saas.gateway import __version__
from saas.gateway.cli import GATEWAY
from saas.gateway.client_address import TrustedProxies
from saas.gateway.dependencies import DIRECT
from saas.gateway.direct import DirectRoutes
from saas.gateway.http_protocol import bounded_httptools
from saas.gateway.hygiene import HygieneMiddleware
from saas.gateway.middleware import RequestContextMiddleware
from saas.gateway.problems import install_problem_handlers
from saas.gateway.ratelimit.limiter import RateLimiter
from saas.gateway.ratelimit.middleware import RateLimitMiddleware
from saas.gateway.ratelimit.policy import Policies
from saas.gateway.ratelimit.redis import RedisLimiter
from saas.gateway.routes import (
    audit,
    auth,
    keys,
    members,
    projects,
    status,
    tenants,
    users,
)
from saas.gateway.settings import GatewaySettings

EXPOSED_HEADERS = ["X-Request-Id", "RateLimit", "RateLimit-Policy", "Retry-After"]


class RateLimits(Component):
    """Owns the rate limiter's Redis connection (no retries; each check is bounded by
    RATE_LIMIT_REDIS_TIMEOUT: a slow Redis must cost a request a quarter of a second at most,
    then the fallback decides)."""

    name = "rate-limits"

    def __init__(self, settings: GatewaySettings, process: ServiceProcess) -> None:
        redis = RedisLimiter.from_url(settings.redis_url) if settings.redis_url else None
        self.limiter = RateLimiter(
            redis,
            fallback=settings.rate_limit_fallback,
            auth_fallback=settings.rate_limit_auth_fallback,
            timeout=settings.rate_limit_redis_timeout,
            retry_interval=settings.rate_limit_retry_interval,
            metrics=process.metrics,
        )

    async def start(self) -> None:
        """Nothing to wait for: the connection is made by the first check, and a Redis that is
        away must not hold the API back (the fallback answers meanwhile)."""

    async def stop(self) -> None:
        await self.limiter.aclose()


def api(process: ServiceProcess, settings: GatewaySettings) -> FastAPI:
    """The public app: the API, its OpenAPI document and docs, and the edge in front of them."""
    app = FastAPI(
        title="SaaS API",
        version=__version__,
        debug=settings.debug,
        description="Every error is an RFC 9457 `application/problem+json` document.",
        # The gateway measures itself (api_request_duration_seconds); FastAPI's OpenTelemetry
        # hooks would look up the global providers on every request to find none.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.process = process
    # Load balancers may probe the API port: the same answers as the ops port's, no error texts.
    health = process.health.router(public=True)
    documentation = list(app.router.routes)  # /openapi.json, /docs, ...
    app.include_router(health)
    routers = (status, auth, users, tenants, members, projects, audit, keys)
    for routes in routers:
        app.include_router(routes.router)
    # The routes that are one service call with path and query parameters at most skip FastAPI's
    # routing and dependency solving (saas.gateway.direct); the rest go through the router.
    app.router.middleware_stack = DirectRoutes(
        app.router.middleware_stack,
        [r for m in routers for r in m.router.routes],
        DIRECT,
        others=[*documentation, *health.routes],
    )
    install_problem_handlers(app)
    if settings.rate_limit_enabled:
        limits = process.add(RateLimits(settings, process))
        app.add_middleware(
            RateLimitMiddleware,
            limiter=limits.limiter,
            policies=Policies.from_settings(settings),
            verifier=process.tokens,
        )
    app.add_middleware(
        HygieneMiddleware,
        max_body_bytes=settings.max_body_bytes,
        timeout=settings.request_timeout,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=process.metrics,
        proxies=TrustedProxies(settings.trusted_proxies),
        hsts_max_age=settings.hsts_max_age,
        access_log=settings.access_log,
        slow_seconds=settings.slow_request_seconds,
    )
    return app


def build(settings: GatewaySettings | None = None) -> ServiceProcess:
    settings = settings or GatewaySettings.load()
    process = ServiceProcess(GATEWAY, __version__, settings)
    process.server = ServerOptions(loop="uvloop", http=bounded_httptools(settings.max_header_bytes))
    ops = process.create_app(title="SaaS gateway operations", version=__version__)
    ops.include_router(status.ops_router)
    if process.has_redis:
        # The API goes on without Redis (rate limits fall back), so it is reported, not required.
        process.health.add("redis", process.redis.ping, required=False)
    process.serve_public(api(process, settings), settings.gateway_host, settings.gateway_port)
    return process

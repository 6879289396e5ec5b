"""Request id, log context and HTTP metrics for every request, as plain ASGI middleware."""

from __future__ import annotations

import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saas.common.logging import get_logger, log_context
from saas.common.metrics import Metrics

REQUEST_ID_HEADER = "x-request-id"
QUIET_PATHS = ("/health", "/metrics")  # probes and scrapes: counted, not logged
log = get_logger(__name__)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def incoming_request_id(scope: Scope) -> str:
    """Keep a caller's request id if it is safe to log and forward, else make one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.requests = metrics.counter(
            "http_requests_total", "HTTP requests", ("method", "route", "status")
        )
        self.latency = metrics.histogram(
            "http_request_duration_seconds", "HTTP request latency", ("method", "route")
        )
        self.in_flight = metrics.gauge("http_requests_in_flight", "HTTP requests being handled")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        client = scope.get("client")
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        self.in_flight.inc()
        with log_context(request_id=request_id, ip_address=client[0] if client else None):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self.in_flight.dec()
                elapsed = time.perf_counter() - started
                template = getattr(scope.get("route"), "path", "unmatched")
                self.requests.labels(scope["method"], template, str(status)).inc()
                self.latency.labels(scope["method"], template).observe(elapsed)
                if not scope["path"].startswith(QUIET_PATHS):
                    log.info(
                        "request",
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    )

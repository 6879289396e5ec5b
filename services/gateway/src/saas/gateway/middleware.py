"""The outermost layer of every API request, as plain ASGI middleware (no per-request objects
beyond what the request needs): its id, the client's address, the log context, the security
headers and the `api_request_duration_seconds` histogram.

- The request id is the caller's `X-Request-Id` when it is safe to log and forward (1 to 128 of
  `A-Z a-z 0-9 . _ : -`), otherwise a new one; it is sent back on every response, forwarded to
  services (who put it in their logs and, as `correlation_id`, in the events the request causes).
- The client's address comes from `TrustedProxies`; it replaces `scope["client"]`, so logs, rate
  limits and the address forwarded to services (identity counts failed logins by it) all agree.
- Every request is timed in the histogram; a log line is written for every request
  (`ACCESS_LOG=all`) or, by default, only for those that failed or were slow (`errors`): a line
  per successful request cost about a third of the gateway's CPU per request (docs/benchmarks.md),
  and the ingress in front logs every request anyway.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saas.common.logging import get_logger, log_context
from saas.common.metrics import Metrics
from saas.gateway.client_address import TrustedProxies

REQUEST_ID_HEADER = b"x-request-id"
log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def incoming_request_id(headers: Sequence[tuple[bytes, bytes]]) -> str:
    """Keep a caller's request id if it is safe to log and forward, else make one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def security_headers(
    *, hsts_max_age: int
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The headers of every API response, and those added when the request came over TLS.

    The API serves JSON (and the docs page), never content to be framed or sniffed: nosniff,
    no framing (`X-Frame-Options` for old browsers, CSP `frame-ancestors` for the rest), no
    referrer. HSTS only means something over TLS, so it is sent only then."""
    always = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", b"frame-ancestors 'none'"),
        (b"referrer-policy", b"no-referrer"),
    ]
    over_tls = (
        [(b"strict-transport-security", b"max-age=%d; includeSubDomains" % hsts_max_age)]
        if hsts_max_age
        else []
    )
    return always, over_tls


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        proxies: TrustedProxies | None = None,
        hsts_max_age: int = 0,
        access_log: str = "all",
        slow_seconds: float = 1.0,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.slow_seconds = slow_seconds
        self.proxies = proxies or TrustedProxies()
        self.always, self.over_tls = security_headers(hsts_max_age=hsts_max_age)
        self.latency = metrics.histogram(
            "api_request_duration_seconds",
            "API requests: time to answer, by route template and status",
            ("method", "route", "status"),
        )
        self.in_flight = metrics.gauge("api_requests_in_flight", "API requests being answered")
        # The histogram's children by their labels: `labels()` takes a lock and checks its
        # arguments on every call, a dictionary lookup does not (as many as the histogram has).
        self._latency_of: dict[tuple[str, str, int], Any] = {}

    def _client(
        self, scope: Scope, headers: Sequence[tuple[bytes, bytes]]
    ) -> tuple[str | None, bool]:
        """The client's address, and whether the request reached us over TLS."""
        peer = scope["client"][0] if scope.get("client") else None
        tls = scope.get("scheme") == "https"
        if not self.proxies:
            return peer, tls
        forwarded = [v.decode("latin-1") for n, v in headers if n == b"x-forwarded-for"]
        proto = [v.decode("latin-1") for n, v in headers if n == b"x-forwarded-proto"]
        client = self.proxies.client(peer, forwarded)
        return client, tls or self.proxies.forwarded_tls(peer, proto)

    def _worth_a_line(self, status: int, elapsed: float) -> bool:
        if self.access_log == "all":
            return True
        if self.access_log == "off":
            return False
        return status >= 400 or elapsed >= self.slow_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        request_id = incoming_request_id(headers)
        client, tls = self._client(scope, headers)
        if client is not None and scope.get("client") and client != scope["client"][0]:
            scope["client"] = (client, 0)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        extra = [(b"x-request-id", request_id.encode()), *self.always]
        if tls:
            extra += self.over_tls
        status = 500
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        self.in_flight.inc()
        with log_context(request_id=request_id, ip_address=client):
            try:
                await self.app(scope, receive, send_with_headers)
            finally:
                self.in_flight.dec()
                elapsed = time.perf_counter() - started
                template = getattr(scope.get("route"), "path", "unmatched")
                key = (scope["method"], template, status)
                child = self._latency_of.get(key)
                if child is None:
                    child = self._latency_of[key] = self.latency.labels(
                        scope["method"], template, str(status)
                    )
                child.observe(elapsed)
                if self._worth_a_line(status, elapsed) and _stdlib_log.isEnabledFor(logging.INFO):
                    log.info(
                        "request",
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    )

"""Bounds on what one request may cost the gateway: its body's size and its time.

- A body over `MAX_BODY_BYTES` is a 413 problem: at once when `Content-Length` says so, else as
  soon as the bytes read pass the bound (chunked bodies), without reading the rest.
- A request not answered within `REQUEST_TIMEOUT` seconds is cancelled (its bus requests too)
  and answered 504. Once a response has started, the connection is closed instead: half a
  response cannot be turned into a problem.

The request head's size is bounded earlier, by the HTTP protocol itself
(`saas.gateway.http_protocol`), before a request reaches any app.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saas.common.errors import ErrorCode
from saas.common.logging import get_logger
from saas.gateway.problems import send_problem

log = get_logger(__name__)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes the bound. An HTTPException, so that FastAPI's
    body parsing lets it through to the problem handlers (as a 413) instead of calling it a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")


def declared_length(scope: Scope) -> tuple[int | None, bool]:
    """`Content-Length` (None if absent or unreadable), and whether the request has a body."""
    length, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked or bool(length)


class HygieneMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, has_body = declared_length(scope)
        limit = self.max_body_bytes
        if length is not None and length > limit:
            await send_problem(
                scope, send, ErrorCode.PAYLOAD_TOO_LARGE, f"the request body exceeds {limit} bytes"
            )
            return
        if has_body:
            receive = self._bounded(receive)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                await self.app(scope, receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                return  # uvicorn closes a connection whose response was left unfinished
            await send_problem(scope, send, ErrorCode.PAYLOAD_TOO_LARGE, str(exc.detail))
        except TimeoutError:
            if not deadline.expired():
                raise  # someone else's timeout: not ours to answer
            log.warning("request timed out", path=scope["path"], seconds=self.timeout)
            if started:
                return
            await send_problem(
                scope,
                send,
                ErrorCode.TIMEOUT,
                f"the request was not answered within {self.timeout:g} seconds",
            )

    def _bounded(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return bounded_receive

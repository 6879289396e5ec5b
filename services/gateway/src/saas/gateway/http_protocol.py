"""The gateway's HTTP/1.1 protocol: uvicorn's httptools protocol with a bound on the request head.

llhttp (under httptools) sets no limit on the size of a request line and its headers, and
uvicorn's httptools protocol adds none: a client could make the gateway hold megabytes of headers
per connection. (h11 has a limit, 16 KiB by default, but answers a bare 400 past it.) This
protocol counts the bytes of a request head as they arrive and, past `MAX_HEADER_BYTES`, answers
431 with a problem document and closes the connection, before any of it reaches the app. A head
within the limit costs one comparison per received chunk. The protocol also sends a response's
head and body in one write (`CoalescingTransport`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from saas.common.errors import ErrorCode, problem

_STATUS_LINE = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"


def _refusal(max_bytes: int) -> bytes:
    body = orjson.dumps(
        problem(
            ErrorCode.HEADERS_TOO_LARGE, f"the request line and headers exceed {max_bytes} bytes"
        )
    )
    return b"".join(
        [
            _STATUS_LINE,
            b"content-type: application/problem+json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


LINGER_SECONDS = 2.0


class CoalescingTransport:
    """A connection's transport whose writes in one turn of the event loop leave in one system
    call: uvicorn writes a response's head and its body separately, two sends where one does.
    Closing (or a write EOF) sends what is pending first; everything else is the transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Two checks: bytes of a head still arriving are counted before they are parsed (so a head
    that never ends costs at most the limit), and a head that ended is measured as parsed (so one
    that arrived whole in a single read is caught too, before a task is made for it)."""

    max_head_bytes = 32 * 1024
    _in_head = True  # between a message's first byte (or the connection's) and its headers' end
    _head_bytes = 0
    _refused = False
    _answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # what the client still sends after the 431 is read and dropped
        if self._in_head:
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end + 4
            if self._head_bytes > self.max_head_bytes:
                self._refused = True
        if not self._refused:
            super().data_received(data)
        if self._refused and not self._answered:
            self._answer()

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.max_head_bytes:
            self._refused = True  # no task for it; data_received answers once parsing returns
            return
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_head = True
        super().on_message_complete()

    def _answer(self) -> None:
        self._answered = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined request is still answering: just hang up
            return
        # Answer, then close only our side and keep reading (and dropping) for a moment: closing
        # a socket with unread data makes the kernel reset the connection, and the client would
        # lose the 431 along with the rest.
        self.transport.write(_refusal(self.max_head_bytes))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def bounded_httptools(max_head_bytes: int) -> type[BoundedHttpToolsProtocol]:
    """The protocol class uvicorn is given, with the gateway's limit."""
    return type(
        "GatewayHttpProtocol", (BoundedHttpToolsProtocol,), {"max_head_bytes": max_head_bytes}
    )

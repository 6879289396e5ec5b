"""The gateway's HTTP/1.1 protocol: uvicorn's httptools protocol with a bound on the request head.

llhttp (under httptools) sets no limit on the size of a request line and its headers, and
uvicorn's httptools protocol adds none: a client could make the gateway hold megabytes of headers
per connection. (h11 has a limit, 16 KiB by default, but answers a bare 400 past it.) This
protocol counts the bytes of a request head as they arrive and, past `MAX_HEADER_BYTES`, answers
431 with a problem document and closes the connection, before any of it reaches the app. A head
within the limit costs one comparison per received chunk.
"""

from __future__ import annotations

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


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 32 * 1024
    _in_head = True  # between a message's first byte (or the connection's) and its headers' end
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        was_in_head = self._in_head
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            self._head_bytes = 0
            return
        # Still inside a head: all of this chunk belongs to it (or, if the head began within the
        # chunk, a little more: the previous message's tail, which only makes the count safer).
        self._head_bytes = self._head_bytes + len(data) if was_in_head else len(data)
        if self._head_bytes > self.max_head_bytes:
            self._refuse()

    def _refuse(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_refusal(self.max_head_bytes))
        self.transport.close()  # a pipelined request still answering: just hang up

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()


def bounded_httptools(max_head_bytes: int) -> type[BoundedHttpToolsProtocol]:
    """The protocol class uvicorn is given, with the gateway's limit."""
    return type(
        "GatewayHttpProtocol", (BoundedHttpToolsProtocol,), {"max_head_bytes": max_head_bytes}
    )

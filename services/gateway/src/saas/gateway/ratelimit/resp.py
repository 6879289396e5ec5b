"""One pipelined connection to Redis for the rate limiter's script calls.

Every request of the API makes one script call, so its cost per call matters more than anything
a general client offers. redis-py spends more per call than the call itself: a pool checkout and
release under a lock, a retry wrapper, a read timeout per call, command packing and reply
parsing in Python, and one socket write per call. Here:

- one connection, pipelined: calls are written as they come, replies are matched to calls in
  order (Redis answers in order), so concurrent requests share the connection without waiting
  for each other's round trips;
- the calls made in one turn of the event loop leave in one socket write;
- replies are parsed by hiredis (C);
- the caller sends a command already packed (the limiter packs the constant parts once).

Failures are the caller's to handle: a connection that cannot be made raises `OSError`, a lost
one fails every call in flight with `ConnectionError`, an error reply raises redis-py's
`ResponseError`; the next call connects again. A call has no timeout of its own: the caller
bounds it, and `reset()` drops a connection that did not answer in time, so a call never waits
behind a connection that went silent.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ResponseError


def pack(*parts: bytes) -> bytes:
    """A command in RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class _Protocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:  # nothing asked for it: the stream cannot be trusted
                self.abort(ConnectionError("Redis sent a reply nobody asked for"))
                return
            future = self.waiting.popleft()
            if future.done():  # its caller gave up; the reply still had to be read in order
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"the connection to Redis was lost: {exc or 'closed'}")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise ConnectionError("the connection to Redis is closed")
        future = self.loop.create_future()
        self.waiting.append(future)
        if not self.outgoing:
            self.loop.call_soon(self._flush)  # once per turn of the loop, for all its calls
        self.outgoing.append(command)
        return future

    def _flush(self) -> None:
        data = b"".join(self.outgoing)
        self.outgoing.clear()
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def abort(self, exc: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows and fails what is waiting
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)


class RespConnection:
    """Calls to one Redis server (a `redis://`, `rediss://` or `unix://` URL, with its user,
    password and database) over one connection, made on first use and again after a loss."""

    def __init__(self, url: str) -> None:
        options = parse_url(url)
        unknown = set(options) - {"host", "port", "path", "db", "username", "password"}
        unknown.discard("connection_class")
        if unknown:  # said at start-up rather than silently connecting otherwise
            raise ValueError(f"REDIS_URL options the rate limiter does not take: {sorted(unknown)}")
        self.host = options.get("host", "localhost")
        self.port = int(options.get("port", 6379))
        self.path = (
            options.get("path")
            if options.get("connection_class") is UnixDomainSocketConnection
            else None
        )
        self.tls = options.get("connection_class") is SSLConnection
        self.username = options.get("username")
        self.password = options.get("password")
        self.db = int(options.get("db") or 0)
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()

    async def call(self, command: bytes) -> Any:
        """Send one packed command and wait for its reply."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connected()
        return await protocol.send(command)

    async def _connected(self) -> _Protocol:
        async with self._connecting:  # concurrent callers share one attempt
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            loop = asyncio.get_running_loop()
            if self.path is not None:
                transport, protocol = await loop.create_unix_connection(
                    lambda: _Protocol(loop), self.path
                )
            else:
                transport, protocol = await loop.create_connection(
                    lambda: _Protocol(loop),
                    self.host,
                    self.port,
                    ssl=ssl.create_default_context() if self.tls else None,
                )
            try:
                if self.password is not None:
                    user = [self.username.encode()] if self.username else []
                    await protocol.send(pack(b"AUTH", *user, self.password.encode()))
                if self.db:
                    await protocol.send(pack(b"SELECT", b"%d" % self.db))
            except BaseException:
                transport.abort()
                raise
            self._protocol = protocol
            return protocol

    def reset(self) -> None:
        """Drop the connection (calls in flight fail); the next call connects again."""
        if self._protocol is not None:
            self._protocol.abort(ConnectionError("the connection to Redis was reset"))
            self._protocol = None

    async def aclose(self) -> None:
        self.reset()

"""One NATS connection per process, kept alive through pauses, restarts and network cuts.

nats-py is worked around here, and only here, for two faults that leave a client "connected" but
deaf for good, and for one cost:

- A flush that times out cancels its PONG future but leaves it queued; when the late PONG
  arrives, `_process_pong` calls `set_result` on the cancelled future, `InvalidStateError`
  escapes into the read loop, and the read loop ends without reconnecting (its catch-all branch
  only logs; see nats-io/nats.py PR #914, and the same desynchronisation in nats.py2 PR #36). A
  readiness probe flushing with a timeout while the server is frozen is enough to trigger it.
  `_answer_pong` below consumes one queued future per PONG and resolves it only if still pending.
- Whatever else ends the read loop while the client still counts itself connected, a watchdog
  notices within a second and hands the client to its own reconnect logic.

- Every JetStream message carries headers (`Nats-Msg-Id`, `Nats-Expected-Stream`), and nats-py
  checks each character of each header name for white space with a generator expression: the
  largest single cost of receiving an event. `_parse_header_lines` below gives the same result
  with one regular-expression search per name.

`alive` is the liveness signal: false once the client is closed or its read loop has stayed dead
past the watchdog's attempts, so Kubernetes restarts a process that cannot heal.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from urllib.parse import unquote, urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NATS

from saas.common.bus.access import inbox_prefix
from saas.common.bus.jetstream import JetStream
from saas.common.logging import get_logger

log = get_logger(__name__)

PING_INTERVAL = 5.0  # seconds between client PINGs: a silent partition is noticed in ~15 s
MAX_OUTSTANDING_PINGS = 3
WATCHDOG_INTERVAL = 1.0
DEAD_AFTER = 30.0  # seconds a broken client may stay broken before liveness fails


class Bus:
    """Owns the process's NATS connection; reconnects forever, logs state changes."""

    def __init__(self, url: str, name: str, *, tls_ca_file: str | None = None) -> None:
        """`url` may carry the user and password (`nats://identity:secret@nats:4222`; `tls://`
        for TLS, checked against the system's CAs or `tls_ca_file`)."""
        self.url = url
        self.name = name
        self.tls_ca_file = tls_ca_file
        self._nc: NATS | None = None
        self._js: tuple[NATS, JetStream] | None = None
        self._closing = False
        self._watchdog: asyncio.Task[None] | None = None
        self._broken_since: float | None = None

    async def connect(self, *, connect_timeout: float = 5.0) -> None:
        async def on_disconnect() -> None:
            if not self._closing:
                log.warning("nats disconnected")

        async def on_reconnect() -> None:
            log.info("nats reconnected")

        async def on_error(exc: Exception) -> None:
            if not self._closing:
                log.warning("nats error", error=str(exc))

        server, user, password = split_credentials(self.url)
        tls = None
        if urlsplit(server).scheme == "tls":
            tls = ssl.create_default_context(cafile=self.tls_ca_file)
        nc = await nats.connect(
            servers=[server],
            name=self.name,
            # Given once, not in the URL, so servers discovered in a cluster get them too.
            user=user,
            password=password,
            inbox_prefix=inbox_prefix(user),  # its user may subscribe to nothing else
            tls=tls,
            connect_timeout=connect_timeout,
            # Give up the first connection quickly, so the caller retries it with its own backoff
            # (and can be cancelled by SIGTERM); once connected, reconnect forever. nats-py has one
            # option for both, read at each attempt, so it is raised after connecting.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            ping_interval=PING_INTERVAL,
            max_outstanding_pings=MAX_OUTSTANDING_PINGS,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
        nc.options["max_reconnect_attempts"] = -1
        nc._process_pong = lambda: _answer_pong(nc)  # type: ignore[method-assign]
        nc._parse_header_lines = _parse_header_lines  # type: ignore[method-assign]
        self._nc = nc
        self._watchdog = asyncio.create_task(self._watch(nc), name="nats-watchdog")
        log.info("nats connected", url=server, user=user)

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise ConnectionError("not connected to NATS yet")
        return self._nc

    @property
    def js(self) -> JetStream:
        """The connection's one JetStream context.

        A context subscribes its own reply inbox on its first `publish_async` (a subscription and
        a task that live as long as the connection), so a context per use would leak one per use.
        It is made again only when the connection object is a new one."""
        nc = self.nc
        if self._js is None or self._js[0] is not nc:
            self._js = (nc, JetStream(nc))
        return self._js[1]

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected and _reading(self._nc)

    @property
    def alive(self) -> bool:
        """Liveness: false when this client can no longer heal by itself."""
        if self._nc is None or self._closing:
            return (
                True  # not connected yet, or stopping: start-up and shutdown have their own limits
            )
        if self._nc.is_closed:
            return False
        return self._broken_since is None or time.monotonic() - self._broken_since < DEAD_AFTER

    async def check(self) -> None:
        """Readiness: connected, reading, and the server answers a round trip."""
        if not self.is_connected:
            raise ConnectionError("not connected")
        await self.nc.flush(timeout=2)

    async def _watch(self, nc: NATS) -> None:
        while not nc.is_closed:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            if nc.is_connected and not _reading(nc):
                self._broken_since = self._broken_since or time.monotonic()
                log.error("nats read loop has died; reconnecting")
                with contextlib.suppress(Exception):
                    await nc._process_op_err(ConnectionResetError("read loop died"))
            elif nc.is_connected:
                self._broken_since = None

    async def close(self) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """The server URL without credentials, the user and the password (URL-decoded)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None, None
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    plain = urlunsplit(parts._replace(netloc=netloc))
    return plain, unquote(parts.username), unquote(parts.password or "") or None


def _reading(nc: NATS) -> bool:
    task = nc._reading_task
    return task is not None and not task.done()


async def _answer_pong(nc: NATS) -> None:
    """One PONG answers the oldest PING; resolve its future only if nobody gave up on it."""
    if nc._pongs:
        future = nc._pongs.pop(0)
        if not future.done():
            future.set_result(True)
    nc._pongs_received += 1
    nc._pings_outstanding = 0


_WHITE_SPACE = re.compile(r"\s")


def _parse_header_lines(raw: bytes) -> dict[str, str]:
    """nats-py's `Client._parse_header_lines`, line for line, without a generator per name: a
    line without a colon, a name that is not ASCII or holds white space is skipped; values are
    stripped and decoded as UTF-8, malformed bytes replaced."""
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _WHITE_SPACE.search(key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out

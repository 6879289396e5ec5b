"""One NATS connection per process."""

from __future__ import annotations

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from saas.common.bus.jetstream import JetStream
from saas.common.logging import get_logger

log = get_logger(__name__)


class Bus:
    """Owns the process's NATS connection; reconnects forever, logs state changes."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._nc: NATS | None = None
        self._js: tuple[NATS, JetStreamContext] | None = None
        self._closing = False

    async def connect(self, *, connect_timeout: float = 5.0) -> None:
        async def on_disconnect() -> None:
            if not self._closing:
                log.warning("nats disconnected")

        async def on_reconnect() -> None:
            log.info("nats reconnected")

        async def on_error(exc: Exception) -> None:
            log.warning("nats error", error=str(exc))

        nc = await nats.connect(
            servers=[self.url],
            name=self.name,
            connect_timeout=connect_timeout,
            # Give up the first connection quickly, so the caller retries it with its own backoff
            # (and can be cancelled by SIGTERM); once connected, reconnect forever. nats-py has one
            # option for both, read at each attempt, so it is raised after connecting.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        log.info("nats connected", url=self.url)

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise ConnectionError("not connected to NATS yet")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
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
        return self._nc is not None and self._nc.is_connected

    async def check(self) -> None:
        """Readiness: connected, and the server answers a round trip."""
        if not self.is_connected:
            raise ConnectionError("not connected")
        await self.nc.flush(timeout=2)

    async def close(self) -> None:
        self._closing = True
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()

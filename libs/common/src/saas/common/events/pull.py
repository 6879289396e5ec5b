"""Fetching batches from a JetStream pull consumer with one callback subscription.

nats-py's `fetch` waits for each message with its own timer, which costs more than the rest of
the consumer's per-message work at thousands of events per second. Here the consumer's inbox is
a plain subscription whose callback only appends to a buffer; a fetch asks the server for what is
immediately available (`no_wait`) and, if there is nothing, waits for the first message of a
long-poll request. Messages a request delivers late are kept for the next fetch.

Two things overlap the consumer's waits on its database with work it would otherwise do after:
a fetch that takes a batch at once asks for the next one (so it arrives while this one is
applied), and `prepare` (parsing, say) runs on each message as it arrives, in the callback.

The server answers a request for a durable that no longer exists (deleted by hand, or lost with
its stream) with a status, not an error: `fetch` turns that into `ConsumerGone` so that the
consumer can declare it again instead of stalling silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

# Status codes the server sends on the inbox instead of messages.
NO_MESSAGES, REQUEST_TIMEOUT, CONFLICT, HEARTBEAT = "404", "408", "409", "100"
NO_RESPONDERS = "503"  # nothing serves the durable's subject: the consumer does not exist
CONSUMER_DELETED = "Consumer Deleted"  # the description of a 409 to requests it left open

Arrival = tuple[Msg, Any]  # a message, and what `prepare` made of it


class ConsumerGone(Exception):
    """The server has no such durable consumer any more."""


def _nothing(_: Msg) -> None:
    return None


class BatchPuller:
    def __init__(
        self,
        nc: NATS,
        stream: str,
        consumer: str,
        *,
        prepare: Callable[[Msg], Any] = _nothing,
    ) -> None:
        self.nc = nc
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.inbox = nc.new_inbox()
        self._prepare = prepare
        self._buffer: list[Arrival] = []
        self._target = 1
        self._done = asyncio.Event()  # enough messages, or a status that ends a request
        self._gone = False
        self._sub: Subscription | None = None

    @property
    def buffered(self) -> int:
        """Messages received but not yet fetched."""
        return len(self._buffer)

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.inbox, cb=self._on_message)

    async def stop(self) -> None:
        """Stop receiving, and hand back what arrived but was never fetched, so that another
        replica gets it at once rather than after the ack wait."""
        if self._sub is not None:
            # Once the server has the unsubscribe it sends nothing more; what it sent is here.
            with contextlib.suppress(Exception):
                await self._sub.drain()
            self._sub = None
        left, self._buffer = self._buffer, []
        for msg, _ in left:
            try:
                await msg.nak()
            except Exception:  # NATS is away: the server redelivers after the ack wait anyway
                break

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None and msg.reply:
            self._buffer.append((msg, self._prepare(msg)))
            if len(self._buffer) >= self._target:
                self._done.set()
        elif status == NO_RESPONDERS or (
            status == CONFLICT and msg.headers.get("Description") == CONSUMER_DELETED
        ):
            self._gone = True
            self._done.set()
        elif status in (NO_MESSAGES, REQUEST_TIMEOUT, CONFLICT):
            # Possibly the end of an earlier request: at worst this batch is smaller.
            self._done.set()

    async def _request(self, **request: object) -> None:
        await self.nc.publish(self.next_subject, orjson.dumps(request), reply=self.inbox)

    async def _ask(self, target: int, timeout: float, **request: object) -> None:
        self._target = target
        self._done.clear()
        await self._request(**request)
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            pass

    async def fetch(self, batch: int, timeout: float) -> list[Arrival]:
        """Up to `batch` messages, each with what `prepare` made of it; an empty list if none
        arrived within `timeout` seconds. Raises `ConsumerGone` once what was received is
        fetched, if the durable is gone."""
        if len(self._buffer) < batch and not self._gone:
            # What is there right now: the server answers at once, with messages and/or a 404.
            await self._ask(batch, timeout, batch=batch - len(self._buffer), no_wait=True)
        if not self._buffer and not self._gone:
            # Nothing waiting: hold a request open until the first message or the timeout.
            await self._ask(1, timeout, batch=batch, expires=int(timeout * 1e9))
        if self._gone and not self._buffer:
            self._gone = False
            raise ConsumerGone(self.next_subject)
        taken, self._buffer = self._buffer[:batch], self._buffer[batch:]
        if taken and len(self._buffer) < batch and not self._gone:
            # Busy: the next batch comes in while the caller applies this one.
            await self._request(batch=batch - len(self._buffer), no_wait=True)
        return taken

"""The JetStream context `Bus.js` hands out: nats-py's, with error acks delivered, and a batch
publisher.

In nats-py (up to at least 2.16), `publish_async`'s reply handler builds the error of an error
ack with `APIError.from_error`, which raises instead of returning: the error escapes to the
connection's error callback and the publish's future never resolves, so a message JetStream
refused (over the stream's size limit, say) looks like a timeout (nats-io/nats.py#985). This
catches it and sets it on the future, where the publisher awaits it. Once nats-py is fixed,
nothing raises here and the override does nothing.

`publish_batch` publishes many messages at once, each with its own ack, for the outbox relay;
`acknowledge` acknowledges many delivered messages at once, for consumers.
`publish_async` costs, per message, a semaphore, a future with its callback, a new token, header
checks by regular expression and a wake-up of the client's flusher: more than the rest of the
relay's work per event. Here a batch's messages go to the client's outgoing buffer as one write,
their acks come back on one subscription whose reply subjects name the batch and the message's
place in it, and the batch waits on one event. Both write to that buffer the way nats-py's own
`publish` does (`_send_command`, then `_flush_pending`): the tests of the relay and the consumer
run them against a real server, so a nats-py that changed them fails there.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

_TOKEN_OFFSET = 22 + 2  # the reply subject is <inbox prefix>.<22-char nuid>.<token>

# No subject may be published to with white space, empty tokens or wildcard tokens; a header value
# may not break the protocol's framing.
BAD_SUBJECT = re.compile(r"(^|\.)(\*|>)?(\.|$)|\s")
_HEADER_VALUE = re.compile(r"[!-~]+")
NO_RESPONDERS = "503"


@dataclass(frozen=True)
class Message:
    subject: str
    payload: bytes
    msg_id: str  # Nats-Msg-Id: JetStream drops a repeat within its duplicate window


class NotAnswered(TimeoutError):
    """JetStream did not acknowledge the message in time."""


@dataclass
class _Batch:
    outcomes: list[object]
    waiting: int
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self, index: int, outcome: object) -> None:
        if 0 <= index < len(self.outcomes) and self.outcomes[index] is None:
            self.outcomes[index] = outcome
            self.waiting -= 1
            if not self.waiting:
                self.done.set()


class JetStream(JetStreamContext):
    _batch_inbox: str | None = None
    _batches: dict[str, _Batch]

    async def _handle_async_reply(self, msg: Msg) -> None:
        try:
            await super()._handle_async_reply(msg)
        except APIError as refused:
            token = msg.subject[len(self._nc._inbox_prefix) + _TOKEN_OFFSET :]
            future = self._publish_async_futures.get(token)
            if future is not None and not future.done():
                future.set_exception(refused)

    async def publish_batch(
        self, messages: Sequence[Message], *, stream: str, timeout: float
    ) -> list[object]:
        """Publish `messages` in order, each to `stream` only; returns each one's outcome, in
        order: its `PubAck`, the error JetStream answered (`APIError`), `NoStreamResponseError`
        when nothing takes its subject, the client's refusal to send it, or `NotAnswered` when
        no answer came within `timeout` seconds."""
        nc = self._nc
        if not nc.is_connected:
            raise nats.errors.ConnectionReconnectingError()
        if self._batch_inbox is None:
            self._batches = {}
            inbox = nc.new_inbox()
            await nc.subscribe(inbox + ".>", cb=self._on_batch_reply)
            self._batch_inbox = inbox
        token = nc._nuid.next().decode()
        outcomes: list[object] = [None] * len(messages)
        commands = []
        for i, message in enumerate(messages):
            refused = _refused(message, nc.max_payload)
            if refused is not None:
                outcomes[i] = refused
                continue
            reply = f"{self._batch_inbox}.{token}.{i}"
            commands.append(_hpub(message, reply, stream))
        waiting = sum(1 for o in outcomes if o is None)
        if not waiting:
            return outcomes
        batch = self._batches[token] = _Batch(outcomes, waiting)
        try:
            data = b"".join(commands)
            await nc._send_command(data)
            nc.stats["out_msgs"] += len(commands)
            nc.stats["out_bytes"] += len(data)
            await nc._flush_pending()
            await asyncio.wait_for(batch.done.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            del self._batches[token]  # late answers are dropped
        return [NotAnswered(f"no ack within {timeout}s") if o is None else o for o in outcomes]

    async def _on_batch_reply(self, msg: Msg) -> None:
        assert self._batch_inbox is not None
        token, _, index = msg.subject[len(self._batch_inbox) + 1 :].partition(".")
        batch = self._batches.get(token)
        if batch is not None and index.isdigit():
            batch.settle(int(index), _answer(msg))


def _refused(message: Message, max_payload: int) -> Exception | None:
    """Why the client will not send this message, as nats-py's own `publish` would say."""
    if BAD_SUBJECT.search(message.subject):
        return nats.errors.BadSubjectError()
    if not _HEADER_VALUE.fullmatch(message.msg_id):
        return nats.errors.BadHeaderError(message.msg_id)
    if len(message.payload) > max_payload:
        return nats.errors.MaxPayloadError()
    return None


def _hpub(message: Message, reply: str, stream: str) -> bytes:
    headers = (
        f"NATS/1.0\r\nNats-Msg-Id: {message.msg_id}\r\nNats-Expected-Stream: {stream}\r\n\r\n"
    ).encode()
    size = len(headers) + len(message.payload)
    line = f"HPUB {message.subject} {reply} {len(headers)} {size}\r\n".encode()
    return line + headers + message.payload + b"\r\n"


def _answer(msg: Msg) -> object:
    """What JetStream answered about one message."""
    if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
        return NoStreamResponseError()
    try:
        answer = orjson.loads(msg.data)
        if error := answer.get("error"):
            return _api_error(error)
        return PubAck(
            stream=answer["stream"],
            seq=answer["seq"],
            domain=answer.get("domain"),
            duplicate=answer.get("duplicate"),
        )
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        return exc  # not an answer JetStream gives: nobody's fault


def _api_error(error: dict) -> APIError:
    try:
        APIError.from_error(error)  # raises the subclass that matches the code
    except APIError as refused:
        return refused
    except TypeError:  # fields nats-py does not know
        pass
    return APIError(code=error.get("code"), description=error.get("description"))


async def acknowledge(nc: NATS, msgs: Sequence[Msg]) -> None:
    """Acknowledge each of `msgs` (explicitly: each its own ack, as `Msg.ack` sends it) in one
    write, rather than one publish and one wake-up of the client's flusher per message."""
    if not msgs:
        return
    if not nc.is_connected:  # nats-py would keep them for after a reconnect: not worth it here
        raise nats.errors.ConnectionReconnectingError()
    if not all(m.reply for m in msgs):
        raise nats.errors.NotJSMessageError()
    data = b"".join(f"PUB {m.reply} 0\r\n\r\n".encode() for m in msgs)
    await nc._send_command(data)
    nc.stats["out_msgs"] += len(msgs)
    await nc._flush_pending()
    for m in msgs:
        m._ackd = True


_V1_ACK_TOKENS = (
    9  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>
)


def deliveries(msg: Msg) -> int:
    """How many times the server has delivered `msg`, as `msg.metadata.num_delivered` says, read
    from the reply subject's one token instead of building the whole `Metadata` (two dataclasses
    and a datetime: nine tenths of the cost, which a consumer paid on every event of a batch)."""
    tokens = msg.reply.split(".") if msg.reply else ()
    if len(tokens) == _V1_ACK_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[4])
    return msg.metadata.num_delivered  # the form with a domain, or not a JetStream message

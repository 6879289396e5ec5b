"""The JetStream context `Bus.js` hands out: nats-py's, with error acks delivered.

In nats-py (up to at least 2.16), `publish_async`'s reply handler builds the error of an error
ack with `APIError.from_error`, which raises instead of returning: the error escapes to the
connection's error callback and the publish's future never resolves, so a message JetStream
refused (over the stream's size limit, say) looks like a timeout (nats-io/nats.py#985). This
catches it and sets it on the future, where the publisher awaits it. Once nats-py is fixed,
nothing raises here and the override does nothing.
"""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError

_TOKEN_OFFSET = 22 + 2  # the reply subject is <inbox prefix>.<22-char nuid>.<token>


class JetStream(JetStreamContext):
    async def _handle_async_reply(self, msg: Msg) -> None:
        try:
            await super()._handle_async_reply(msg)
        except APIError as refused:
            token = msg.subject[len(self._nc._inbox_prefix) + _TOKEN_OFFSET :]
            future = self._publish_async_futures.get(token)
            if future is not None and not future.done():
                future.set_exception(refused)

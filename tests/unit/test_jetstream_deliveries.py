"""`deliveries` reads a delivery count from the reply subject as nats-py's metadata does."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from saas.common.bus.jetstream import deliveries

REPLIES = [
    "$JS.ACK.EVENTS.audit.1.123.45.1764400000000000000.0",
    "$JS.ACK.EVENTS.audit.7.123.45.1764400000000000000.4321",
    "$JS.ACK.EVENTS.audit.12.9.9.1764400000000000000.1",
    # with a domain and an account hash (and a random token): nats-py's own parser
    "$JS.ACK.hub.ACCHASH.EVENTS.audit.3.123.45.1764400000000000000.0.rnd",
    "$JS.ACK.hub.ACCHASH.EVENTS.audit.1.123.45.1764400000000000000.0",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_deliveries_is_num_delivered(reply: str) -> None:
    msg = Msg(_client=None, subject="project.created", reply=reply)  # type: ignore[arg-type]
    expected = Msg(_client=None, subject="x", reply=reply).metadata.num_delivered  # type: ignore[arg-type]
    assert deliveries(msg) == expected


@pytest.mark.parametrize("reply", ["", "_INBOX.abc.def", "$JS.ACK.a.b.c"])
def test_not_a_jetstream_message(reply: str) -> None:
    with pytest.raises(NotJSMessageError):
        deliveries(Msg(_client=None, subject="x", reply=reply))  # type: ignore[arg-type]

"""The rate limiter's Redis connection: replies matched to calls in order, a reply whose caller
gave up read and dropped, one write per turn of the event loop, a lost connection failing every
call in flight, and REDIS_URL options it cannot honour refused at start-up."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError

from saas.gateway.ratelimit.resp import RespConnection, _Protocol, pack


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


def _connected() -> tuple[_Protocol, _Transport]:
    protocol, transport = _Protocol(asyncio.get_running_loop()), _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


async def test_replies_go_to_their_calls_in_order_and_calls_of_one_turn_share_a_write():
    protocol, transport = _connected()
    first, second, third = (protocol.send(pack(b"GET", b"k%d" % i)) for i in range(3))
    await asyncio.sleep(0)
    assert transport.written == [pack(b"GET", b"k0") + pack(b"GET", b"k1") + pack(b"GET", b"k2")]
    protocol.data_received(b"*2\r\n:1\r\n:2\r\n-ERR no\r")  # a reply split across reads
    protocol.data_received(b"\n$3\r\nabc\r\n")
    assert await first == [1, 2]
    with pytest.raises(ResponseError, match="ERR no"):
        await second
    assert await third == b"abc"


async def test_the_reply_of_a_call_given_up_is_read_and_dropped():
    protocol, _ = _connected()
    abandoned, wanted = protocol.send(pack(b"PING")), protocol.send(pack(b"PING"))
    abandoned.cancel()
    protocol.data_received(b":1\r\n:2\r\n")
    assert await wanted == 2


async def test_a_lost_connection_fails_every_call_in_flight_and_refuses_new_ones():
    protocol, _ = _connected()
    calls = [protocol.send(pack(b"PING")) for _ in range(3)]
    protocol.connection_lost(ConnectionResetError("reset by peer"))
    for call in calls:
        with pytest.raises(ConnectionError):
            await call
    with pytest.raises(ConnectionError):
        protocol.send(pack(b"PING"))


async def test_a_reply_nobody_asked_for_drops_the_connection():
    protocol, transport = _connected()
    protocol.data_received(b":1\r\n")
    assert transport.aborted and protocol.closed


async def test_an_unreachable_server_is_an_os_error():
    connection = RespConnection("redis://127.0.0.1:1/0")
    with pytest.raises(OSError):
        await connection.call(pack(b"PING"))


def test_the_url_gives_server_credentials_and_database():
    c = RespConnection("rediss://:secret@cache.internal:6380/2")
    assert (c.host, c.port, c.tls, c.username, c.password, c.db) == (
        "cache.internal",
        6380,
        True,
        None,
        "secret",
        2,
    )
    assert RespConnection("unix:///run/redis.sock?db=3").path == "/run/redis.sock"


def test_url_options_it_cannot_honour_are_refused():
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        RespConnection("rediss://cache:6379/0?ssl_cert_reqs=none")

"""Request/reply over a real NATS server: replies, error codes, timeouts, no responders."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, Field

from saas.common.bus import Bus, BusClient, RequestContext, Responder
from saas.common.errors import ErrorCode, ServiceError
from saas.common.metrics import Metrics
from saas.common.tokens import TokenVerifier
from tests.support.tokens import POLICY, Keys


class Greet(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    delay: float = 0.0


class Greeting(BaseModel):
    text: str
    request_id: str
    user_id: str | None = None
    tenant_id: str | None = None
    role: str | None = None


def make_responder(service: str, label: str = "a") -> Responder:
    responder = Responder(service)

    @responder.operation("greet", Greet)
    async def greet(request: Greet, ctx: RequestContext) -> Greeting:
        await asyncio.sleep(request.delay)
        return Greeting(
            text=f"hello {request.name} from {label}",
            request_id=ctx.request_id,
            tenant_id=ctx.client_ip,
            role="bearer" if ctx.token else None,
        )

    @responder.operation("fail", Greet)
    async def fail(request: Greet, ctx: RequestContext) -> Greeting:
        raise ServiceError(
            ErrorCode.CONFLICT, f"{request.name} already exists", {"name": request.name}
        )

    @responder.operation("crash", Greet)
    async def crash(request: Greet, ctx: RequestContext) -> Greeting:
        raise RuntimeError("secret internal detail")

    return responder


@pytest.fixture
async def service(bus: Bus, tasks, unique):
    name = f"svc{unique}"
    responder = make_responder(name)
    await responder.start(bus, tasks, Metrics())
    yield name, responder
    await responder.stop_taking_requests()


async def test_typed_reply_carries_request_id_token_and_client_address(client, service):
    name, _ = service
    reply = await client.request(
        name, "greet", Greet(name="ada"), Greeting, request_id="req-42", token="t", client_ip="::1"
    )
    assert reply.text == "hello ada from a"
    assert (reply.request_id, reply.tenant_id, reply.role) == ("req-42", "::1", "bearer")


async def test_identity_headers_of_old_are_not_believed(bus: Bus, tasks, unique):
    """A bus client writing X-Principal-* headers (or any header) is no one: only a token counts."""
    keys = Keys()
    keys.add()
    name = f"forge{unique}"
    responder = Responder(name)

    @responder.operation("whoami", Greet)
    async def whoami(request: Greet, ctx: RequestContext) -> Greeting:
        return Greeting(text=(await ctx.user()).user_id, request_id=ctx.request_id)

    await responder.start(bus, tasks, verifier=TokenVerifier(keys.jwks, POLICY))
    forged = {
        "X-Principal-User-Id": "u-admin",
        "X-Principal-Tenant-Id": "t-1",
        "X-Principal-Role": "owner",
    }
    msg = await bus.nc.request(f"svc.{name}.whoami", b'{"name": "x"}', timeout=2, headers=forged)
    assert b'"unauthorized"' in msg.data and b"u-admin" not in msg.data
    await responder.stop_taking_requests()


async def test_service_error_keeps_its_stable_code(client, service):
    with pytest.raises(ServiceError) as caught:
        await client.request(service[0], "fail", Greet(name="acme"), Greeting)
    assert caught.value.code is ErrorCode.CONFLICT
    assert caught.value.http_status == 409
    assert caught.value.details == {"name": "acme"}


async def test_invalid_request_body_is_a_validation_error(bus: Bus, client, service):
    class Loose(BaseModel):
        name: str

    with pytest.raises(ServiceError) as caught:
        await client.request(service[0], "greet", Loose(name=""), Greeting)
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    assert caught.value.details["errors"][0]["loc"] == ["name"]


async def test_garbage_body_is_a_validation_error_not_a_crash(bus: Bus, service):
    msg = await bus.nc.request(f"svc.{service[0]}.greet", b"\x00not json", timeout=1)
    assert b'"validation_error"' in msg.data


async def test_oversized_request_is_refused(bus: Bus, service):
    msg = await bus.nc.request(f"svc.{service[0]}.greet", b"{" + b" " * 300_000 + b"}", timeout=2)
    assert b'"payload_too_large"' in msg.data


async def test_unexpected_exception_is_internal_and_hides_the_detail(client, service):
    with pytest.raises(ServiceError) as caught:
        await client.request(service[0], "crash", Greet(name="x"), Greeting)
    assert caught.value.code is ErrorCode.INTERNAL
    assert "secret" not in caught.value.message


async def test_no_responder_is_service_unavailable(client, unique):
    with pytest.raises(ServiceError) as caught:
        await client.request(f"nobody{unique}", "greet", Greet(name="x"), Greeting)
    assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
    assert caught.value.http_status == 503


async def test_slow_responder_is_a_timeout(client, service):
    with pytest.raises(ServiceError) as caught:
        await client.request(service[0], "greet", Greet(name="x", delay=1.0), Greeting, timeout=0.2)
    assert caught.value.code is ErrorCode.TIMEOUT
    assert caught.value.http_status == 504


async def test_requests_are_handled_concurrently(client, service):
    started = asyncio.get_running_loop().time()
    replies = await asyncio.gather(
        *(
            client.request(service[0], "greet", Greet(name=f"n{i}", delay=0.3), Greeting)
            for i in range(10)
        )
    )
    assert len(replies) == 10
    assert asyncio.get_running_loop().time() - started < 1.5  # serial handling would take 3s


async def test_queue_group_spreads_requests_across_replicas(bus: Bus, client, tasks, unique):
    name = f"lb{unique}"
    first, second = make_responder(name, "a"), make_responder(name, "b")
    await first.start(bus, tasks)
    await second.start(bus, tasks)
    try:
        replies = [
            await client.request(name, "greet", Greet(name="x"), Greeting) for _ in range(40)
        ]
        assert {r.text[-1] for r in replies} == {"a", "b"}
        await first.stop_taking_requests()
        await bus.nc.flush()
        after = [await client.request(name, "greet", Greet(name="x"), Greeting) for _ in range(10)]
        assert {r.text[-1] for r in after} == {"b"}  # failover: the remaining replica answers all
    finally:
        await second.stop_taking_requests()


async def test_a_handler_past_its_deadline_is_cancelled_and_the_caller_told(
    bus: Bus, tasks, unique
):
    name, cancelled = f"deadline{unique}", asyncio.Event()
    responder = Responder(name, max_handler_seconds=0.3)

    @responder.operation("work", Greet)
    async def work(request: Greet, ctx: RequestContext) -> Greeting:
        try:
            await asyncio.sleep(request.delay)
        finally:
            cancelled.set()
        raise AssertionError("never reached")

    await responder.start(bus, tasks)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(ServiceError) as caught:
            await BusClient(bus, timeout=5).request(
                name, "work", Greet(name="x", delay=10), Greeting
            )
        assert caught.value.code is ErrorCode.TIMEOUT
        assert "did not finish within 0.3s" in caught.value.message
        assert asyncio.get_running_loop().time() - started < 2
        assert cancelled.is_set()
    finally:
        await responder.stop_taking_requests()


async def test_the_callers_timeout_bounds_the_handler_too(bus: Bus, tasks, unique):
    name, finished = f"budget{unique}", asyncio.Event()
    responder = Responder(name)

    @responder.operation("work", Greet)
    async def work(request: Greet, ctx: RequestContext) -> Greeting:
        await asyncio.sleep(request.delay)
        finished.set()
        return Greeting(text="late", request_id=ctx.request_id)

    await responder.start(bus, tasks)
    try:
        with pytest.raises(ServiceError):
            await BusClient(bus, timeout=0.3).request(
                name, "work", Greet(name="x", delay=1), Greeting
            )
        await asyncio.sleep(1.2)
        assert (
            not finished.is_set()
        )  # nobody was waiting: the work stopped at the caller's deadline
    finally:
        await responder.stop_taking_requests()


async def test_a_reply_over_the_bus_limit_is_a_clear_error(bus: Bus, tasks, unique):
    name = f"big{unique}"
    responder = Responder(name)

    @responder.operation("huge", Greet)
    async def huge(request: Greet, ctx: RequestContext) -> Greeting:
        return Greeting(text="x" * (bus.nc.max_payload + 10), request_id=ctx.request_id)

    await responder.start(bus, tasks)
    try:
        with pytest.raises(ServiceError) as caught:
            await BusClient(bus, timeout=3).request(name, "huge", Greet(name="x"), Greeting)
        assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE
        assert "over the bus's limit" in caught.value.message
    finally:
        await responder.stop_taking_requests()


async def test_the_caller_is_whoever_the_forwarded_token_proves(bus: Bus, tasks, unique):
    keys = Keys()
    kid = keys.add()
    verifier = TokenVerifier(keys.jwks, POLICY)
    name = f"who{unique}"
    responder = Responder(name)

    @responder.operation("whoami", Greet)
    async def whoami(request: Greet, ctx: RequestContext) -> Greeting:
        user = await ctx.user()
        return Greeting(text=user.user_id, request_id=ctx.request_id, tenant_id=ctx.client_ip)

    await responder.start(bus, tasks, verifier=verifier)
    client = BusClient(bus, timeout=2)
    try:
        reply = await client.request(
            name,
            "whoami",
            Greet(name="x"),
            Greeting,
            token=keys.sign(kid, sub="u-7"),
            client_ip="203.0.113.9",
        )
        assert (reply.text, reply.tenant_id) == ("u-7", "203.0.113.9")
        forger = Keys()
        forged = forger.sign(forger.add(kid), sub="u-admin")  # our kid, someone else's key
        for token in (None, forged, "not-a-token"):
            with pytest.raises(ServiceError) as caught:
                await client.request(name, "whoami", Greet(name="x"), Greeting, token=token)
            assert caught.value.code is ErrorCode.UNAUTHORIZED
    finally:
        await responder.stop_taking_requests()


async def test_a_token_whose_keys_cannot_be_fetched_is_unavailable_not_unauthorized(
    bus: Bus, tasks, unique
):
    """The JWKS comes over the bus from a service nobody answers for: every caller, the one that
    started the fetch and the ones that waited for it, hears `service_unavailable`, never 401."""
    keys = Keys()
    kid = keys.add()
    keyless = BusClient(bus, timeout=1)

    async def jwks_from_nobody() -> dict:
        reply = await keyless.request(f"nokeys{unique}", "jwks", Greet(name="x"), Greeting)
        return reply.model_dump()

    name = f"cold{unique}"
    responder = Responder(name)

    @responder.operation("whoami", Greet)
    async def whoami(request: Greet, ctx: RequestContext) -> Greeting:
        return Greeting(text=(await ctx.user()).user_id, request_id=ctx.request_id)

    await responder.start(bus, tasks, verifier=TokenVerifier(jwks_from_nobody, POLICY))
    client = BusClient(bus, timeout=2)
    try:
        outcomes = await asyncio.gather(
            *(
                client.request(name, "whoami", Greet(name="x"), Greeting, token=keys.sign(kid))
                for _ in range(10)
            ),
            return_exceptions=True,
        )
        codes = [o.code if isinstance(o, ServiceError) else o for o in outcomes]
        assert codes == [ErrorCode.SERVICE_UNAVAILABLE] * 10
    finally:
        await responder.stop_taking_requests()


async def test_one_jetstream_context_per_connection(stack):
    bus = Bus(stack.nats_url, name="tests")
    await bus.connect()
    first = bus.js
    assert bus.js is first  # every use shares it, and with it one reply inbox
    await bus.close()
    await bus.connect()  # a new connection object gets a context of its own
    assert bus.js is not first
    assert bus.js._nc is bus.nc
    await bus.close()

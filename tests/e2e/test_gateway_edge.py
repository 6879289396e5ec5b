"""The gateway's edge, end to end: real gateway processes sharing a real Valkey (stopped and
started by the tests), the session's NATS, identity faked on the bus (its keys are the test's).

Every test speaks as a client address of its own, through `X-Forwarded-For` from 127.0.0.1,
which the gateways trust: so tests do not share limits, and the trusted-proxy path is exercised.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid

import httpx
import pytest

from tests.support.edge import PrivateValkey, fake_identity, gateways, raw_request
from tests.support.tokens import Keys

pytestmark = pytest.mark.e2e
API = "/api/v1"
ORIGIN = "https://app.example"
SLOW = {"seconds": 0.0}


@pytest.fixture(scope="module")
def valkey(tmp_path_factory):
    server = PrivateValkey(tmp_path_factory.mktemp("valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys() -> Keys:
    keys = Keys()
    keys.kid = keys.add()
    return keys


@pytest.fixture(scope="module")
def identity(stack, keys):
    services = fake_identity(stack.nats_url, keys, delay=lambda: SLOW["seconds"])
    services.start()
    yield services
    services.stop()


@pytest.fixture(scope="module")
def pair(stack, valkey, identity, tmp_path_factory):
    with gateways(
        stack,
        tmp_path_factory.mktemp("gateways"),
        count=2,
        REDIS_URL=valkey.url,
        TRUSTED_PROXIES="127.0.0.1/32",
        RATE_LIMIT_ANONYMOUS="10/minute",
        RATE_LIMIT_USER="3/3",
        RATE_LIMIT_AUTH_ADDRESS="5/minute",
        RATE_LIMIT_AUTH_ACCOUNT="3/minute",
        RATE_LIMIT_RETRY_INTERVAL="0.5",
        REQUEST_TIMEOUT="1",
        MAX_BODY_BYTES="65536",
        CORS_ORIGINS=ORIGIN,
    ) as children:
        clients = [httpx.Client(base_url=c.public_url, timeout=10) for c in children]
        yield children, clients
        for client in clients:
            client.close()


def address() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


def as_client(ip: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **headers}


def remaining(response: httpx.Response, policy: str) -> int:
    match = re.search(rf'"{policy}";r=(\d+);t=(\d+)', response.headers["ratelimit"])
    assert match, response.headers.get("ratelimit")
    return int(match.group(1))


def token(keys: Keys, user: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.sign(keys.kid, sub=user or uuid.uuid4().hex)}"}


# -- rate limits ---------------------------------------------------------------------------------
def test_two_gateways_sharing_redis_enforce_one_limit_and_count_down_together(pair):
    _, (one, two) = pair
    ip = address()
    responses = [(one, two)[i % 2].get(f"{API}/status", headers=as_client(ip)) for i in range(14)]
    allowed = [r for r in responses if r.status_code == 200]
    assert 10 <= len(allowed) <= 11  # 10 a minute; a share may come back while the test runs
    assert [remaining(r, "anonymous") for r in allowed[:10]] == list(range(9, -1, -1))
    assert all(r.headers["ratelimit-policy"] == '"anonymous";q=10;w=60' for r in responses)
    refused = responses[-1]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["type"] == "urn:saas:problem:rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 6  # one share comes back every 6 s


def test_retry_after_is_honest(pair, keys):
    _, (one, two) = pair
    me = token(keys)
    answers = [(one, two)[i % 2].get(f"{API}/users/me", headers=me) for i in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [remaining(a, "user") for a in answers[:3]] == [2, 1, 0]
    wait = int(answers[3].headers["retry-after"])
    assert wait == 1  # 3 per 3 s: a share comes back each second
    assert two.get(f"{API}/users/me", headers=me).status_code == 429  # not before...
    time.sleep(wait)
    assert one.get(f"{API}/users/me", headers=me).status_code == 200  # ...and not later


def test_each_user_has_a_limit_of_their_own_whatever_address_they_use(pair, keys):
    _, (one, _) = pair
    alice, bob = token(keys), token(keys)
    for _ in range(3):
        assert one.get(f"{API}/users/me", headers={**alice, **as_client(address())}).is_success
    assert one.get(f"{API}/users/me", headers={**alice, **as_client(address())}).status_code == 429
    assert one.get(f"{API}/users/me", headers=bob).status_code == 200


def test_an_invalid_token_counts_against_the_address_not_a_user(pair, keys):
    _, (one, _) = pair
    forged = Keys()
    forged.add(keys.kid)
    response = one.get(
        f"{API}/users/me",
        headers={"Authorization": f"Bearer {forged.sign(keys.kid)}", **as_client(address())},
    )
    assert response.status_code == 401
    assert response.headers["ratelimit-policy"].startswith('"anonymous"')


def test_login_is_limited_per_account_whatever_the_address_and_case(pair):
    _, (one, two) = pair
    account = f"Ada-{uuid.uuid4().hex[:6]}@Example.com"
    variants = [account, account.lower(), f"  {account.upper()} ", account]
    answers = [
        (one, two)[i % 2].post(
            f"{API}/auth/login", json={"email": email}, headers=as_client(address())
        )
        for i, email in enumerate(variants)
    ]
    # No password: each allowed request reaches the route with its body whole, and fails there.
    assert [a.status_code for a in answers] == [422, 422, 422, 429]
    assert {e["loc"][-1] for e in answers[0].json()["errors"]} == {"password"}
    assert '"auth-account"' in answers[3].headers["ratelimit"]


def test_login_is_limited_per_address_across_accounts(pair):
    _, (one, _) = pair
    ip = address()
    codes = [
        one.post(
            f"{API}/auth/login",
            json={"email": f"{uuid.uuid4().hex}@x.example"},
            headers=as_client(ip),
        ).status_code
        for _ in range(6)
    ]
    assert codes == [422] * 5 + [429]


# -- hygiene -------------------------------------------------------------------------------------
def test_a_100_kib_token_is_431_over_a_real_socket_and_the_gateway_goes_on(pair):
    (child, _), (one, _) = pair
    head = (
        f"GET {API}/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {'x' * 100_000}\r\n\r\n"
    ).encode()
    answer = raw_request(child.public_port, head)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"application/problem+json" in answer and b'"code":"headers_too_large"' in answer
    assert one.get(f"{API}/status").status_code == 200


def test_a_token_over_8_kib_within_the_head_limit_is_a_401(pair):
    (child, _), _ = pair
    head = (
        f"GET {API}/users/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {'x' * 20_000}\r\n\r\n"
    ).encode()
    answer = raw_request(child.public_port, head)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"www-authenticate: Bearer" in answer


def test_many_headers_adding_up_past_the_limit_are_431(pair):
    (child, _), _ = pair
    headers = "".join(f"X-Filler-{n}: {'y' * 1000}\r\n" for n in range(40))
    answer = raw_request(
        child.public_port, f"GET {API}/status HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_body_over_the_limit_is_413_whether_declared_or_chunked(pair):
    _, (one, _) = pair
    declared = one.post(f"{API}/auth/register", content=b"x" * 70_000, headers=as_client(address()))
    assert declared.status_code == 413
    assert declared.json()["code"] == "payload_too_large"

    def chunks():
        for _ in range(20):
            yield b"y" * 8192

    chunked = one.post(f"{API}/auth/refresh", content=chunks(), headers=as_client(address()))
    assert chunked.status_code == 413
    assert chunked.headers["content-type"] == "application/problem+json"


def test_a_request_not_answered_in_time_is_504(pair, keys):
    _, (one, _) = pair
    SLOW["seconds"] = 3.0
    try:
        started = time.monotonic()
        response = one.get(f"{API}/users/me", headers=token(keys))
        assert response.status_code == 504
        assert time.monotonic() - started < 2.5  # REQUEST_TIMEOUT is 1 s
        assert response.json()["code"] == "timeout"
        assert response.headers["x-request-id"] == response.json()["request_id"]
    finally:
        SLOW["seconds"] = 0.0


def test_every_response_has_the_security_headers_and_its_request_id(pair):
    _, (one, _) = pair
    for response in (
        one.get(f"{API}/status", headers={"X-Request-Id": "edge-1"}),
        one.get(f"{API}/nope", headers={"X-Request-Id": "edge-2"}),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in response.headers  # plain HTTP
    assert response.headers["x-request-id"] == "edge-2"
    over_tls = one.get(f"{API}/status", headers={"X-Forwarded-Proto": "https"})
    assert over_tls.headers["strict-transport-security"].startswith("max-age=31536000")


def test_a_browser_on_an_allowed_origin_can_read_a_429(pair):
    _, (one, _) = pair
    preflight = one.options(
        f"{API}/users/me",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    ip = address()
    for _ in range(11):
        last = one.get(f"{API}/status", headers=as_client(ip, Origin=ORIGIN))
    assert last.status_code == 429
    assert last.headers["access-control-allow-origin"] == ORIGIN
    exposed = last.headers["access-control-expose-headers"].lower()
    assert "ratelimit" in exposed and "retry-after" in exposed
    other = one.get(f"{API}/status", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


# -- Redis away, and back ------------------------------------------------------------------------
def _summed(metrics_text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def metric(child, name: str) -> float:
    return _summed(httpx.get(child.url + "/metrics").text, name)


async def _in_flight(ops: httpx.AsyncClient) -> float:
    """The gateway's requests in flight, read without blocking the test's loop."""
    return _summed((await ops.get("/metrics")).text, "saas_api_requests_in_flight ")


def test_with_redis_down_general_routes_go_on_auth_routes_503_and_the_gateway_stays_ready(
    pair, valkey
):
    children, (one, two) = pair
    valkey.stop()
    try:
        for client, child in zip((one, two), children, strict=True):
            ip = address()
            general = client.get(f"{API}/status", headers=as_client(ip))
            assert general.status_code == 200
            assert remaining(general, "anonymous") == 9  # counted in this process meanwhile
            login = client.post(
                f"{API}/auth/login", json={"email": "a@b.example"}, headers=as_client(ip)
            )
            assert login.status_code == 503
            assert login.json()["code"] == "service_unavailable"
            assert "rate limits" in login.json()["detail"]
            assert login.headers["retry-after"] == "1"
            ready = httpx.get(child.url + "/health/ready")
            assert ready.status_code == 200
            assert ready.json()["status"] == "ready" and ready.json()["redis"] == "disconnected"
            assert "redis" in ready.json()["errors"]
            # The API port answers load balancers the same, without the errors' texts.
            public = client.get("/health/ready", headers=as_client(address()))
            assert public.status_code == 200
            assert public.json() == {k: v for k, v in ready.json().items() if k != "errors"}
            assert metric(child, "saas_rate_limit_redis_up") == 0
            assert metric(child, "saas_rate_limit_fallbacks_total") >= 2
        # The local limit still limits: 10 a minute per process.
        ip = address()
        codes = [one.get(f"{API}/status", headers=as_client(ip)).status_code for _ in range(11)]
        assert codes == [200] * 10 + [429]
    finally:
        valkey.start()

    deadline = time.monotonic() + 10
    for client, child in zip((one, two), children, strict=True):
        while True:
            login = client.post(
                f"{API}/auth/login", json={"email": "a@b.example"}, headers=as_client(address())
            )
            if login.status_code == 422:
                break
            assert time.monotonic() < deadline, "auth routes did not come back with Redis"
            time.sleep(0.2)
        assert metric(child, "saas_rate_limit_redis_up") == 1
        assert httpx.get(child.url + "/health/ready").json()["redis"] == "connected"
    # One count again: both gateways share it.
    ip = address()
    codes = [
        (one, two)[i % 2].get(f"{API}/status", headers=as_client(ip)).status_code for i in range(11)
    ]
    assert codes.count(200) in (10, 11) and codes[-1] == 429


# -- SIGTERM under load --------------------------------------------------------------------------
async def test_sigterm_under_load_turns_readiness_false_first_and_finishes_every_accepted_request(
    stack, valkey, identity, keys, tmp_path
):
    # Generous times, so that a busy machine changes nothing: each request takes 3 s at
    # identity, and the port takes new requests for 3 s after SIGTERM.
    SLOW["seconds"] = 3.0
    try:
        with gateways(
            stack,
            tmp_path,
            REDIS_URL=valkey.url,
            DRAIN_DELAY="3",
            SHUTDOWN_TIMEOUT="10",
            RATE_LIMIT_USER="100000/minute",
        ) as (child,):
            limits = httpx.Limits(max_connections=100)
            async with (
                httpx.AsyncClient(base_url=child.public_url, timeout=15, limits=limits) as http,
                httpx.AsyncClient(base_url=child.url, timeout=5) as ops,
            ):
                in_flight = [
                    asyncio.create_task(http.get(f"{API}/users/me", headers=token(keys)))
                    for _ in range(48)
                ]
                # Every request is being answered (the gateway counts them) before the signal.
                deadline = time.monotonic() + 10
                while (counted := await _in_flight(ops)) < 48:
                    done = [
                        t.result().status_code for t in in_flight if t.done() and not t.exception()
                    ]
                    failed = [repr(t.exception()) for t in in_flight if t.done() and t.exception()]
                    assert time.monotonic() < deadline, (counted, done, failed[:3])
                    await asyncio.sleep(0.05)
                child.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.1)
                ready = await ops.get("/health/ready")
                assert ready.status_code == 503 and ready.json()["status"] == "draining"
                # Load balancers are told first; the port still takes requests for DRAIN_DELAY.
                async with httpx.AsyncClient(base_url=child.public_url, timeout=5) as late:
                    assert (await late.get(f"{API}/status")).status_code == 200
                answers = await asyncio.gather(*in_flight)
                assert [a.status_code for a in answers] == [200] * 48
                # After DRAIN_DELAY the public port stops taking connections.
                deadline = time.monotonic() + 10
                async with httpx.AsyncClient(base_url=child.public_url, timeout=2) as after:
                    while True:
                        try:
                            await after.get(f"{API}/status")
                        except httpx.ConnectError:
                            break
                        assert time.monotonic() < deadline, "the public port stayed open"
                        await asyncio.sleep(0.1)
            exit_code = await asyncio.to_thread(child.process.wait, 20)
            assert exit_code == 0
    finally:
        SLOW["seconds"] = 0.0


def test_by_default_only_failed_or_slow_requests_get_a_log_line(pair):
    (child, _), (one, _) = pair
    one.get(f"{API}/status", headers={"X-Request-Id": "quiet-200"})
    one.get(f"{API}/nope", headers={"X-Request-Id": "loud-404"})

    def logged(request_id: str) -> bool:
        return any(
            f'"request_id": "{request_id}"' in line and '"message": "request"' in line
            for line in child.log_path.read_text().splitlines()
        )

    deadline = time.monotonic() + 5
    while not logged("loud-404"):
        assert time.monotonic() < deadline, "the 404 was not logged"
        time.sleep(0.05)
    assert not logged("quiet-200")
    text = httpx.get(child.url + "/metrics").text
    assert 'route="/api/v1/status",status="200"' in text  # yet it is counted

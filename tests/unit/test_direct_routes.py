"""Routes called directly (`saas.gateway.direct`) answer exactly as FastAPI answers them: the same
status, headers and bytes for a reply, a 401, an upstream error and an unreachable service, and
the routes that need FastAPI still go through it."""

from __future__ import annotations

import time
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from nats.errors import NoRespondersError

from saas.common.bus.requests import Empty
from saas.common.tokens import Claims, InvalidToken
from saas.gateway.dependencies import DIRECT, Identity
from saas.gateway.direct import DirectRoutes
from saas.gateway.main import build
from saas.gateway.settings import GatewaySettings

GOOD = "good-token"
REPLIES = {
    "svc.identity.users.session": b'{"data":{"user_id":"u1","session_id":null,'
    b'"platform_admin":false,"expires_at":"2026-11-29T15:00:00Z","extra":"dropped"}}',
    "svc.identity.users.me": b'{"error":{"code":"not_found","message":"no such user"}}',
    "svc.identity.users.tenants": b'{"data":{"items":"not a list"}}',
}


class _Msg:
    headers = None

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Nats:
    """Answers as the services would; a subject it does not know has no responders."""

    async def request(self, subject: str, body: bytes, timeout: float, headers: dict) -> _Msg:
        if subject not in REPLIES:
            raise NoRespondersError
        return _Msg(REPLIES[subject])


async def _verify(token: str) -> Claims:
    if token != GOOD:
        raise InvalidToken("invalid")
    return Claims("u1", "t1", None, False, time.time() + 600, token)


def _app(direct: bool):
    settings = GatewaySettings(
        app_env="test", nats_url="nats://127.0.0.1:1", redis_url=None, rate_limit_enabled=False
    )
    process = build(settings)
    process._bus._nc = _Nats()  # type: ignore[union-attr]
    process.tokens.verify = _verify  # type: ignore[method-assign]
    app = process.public.app
    stack = app.router.middleware_stack
    assert isinstance(stack, DirectRoutes)
    if not direct:
        app.router.middleware_stack = stack.app
    return app, stack


@pytest.fixture(scope="module")
def apps():
    (direct, stack), (routed, _) = _app(True), _app(False)
    return direct, routed, stack


async def _answer(app, path: str, headers: dict[str, str]) -> tuple[int, list, bytes]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        response = await http.get(path, headers={"X-Request-Id": "same-id", **headers})
    return response.status_code, response.headers.multi_items(), response.content


def test_the_hot_routes_are_direct_and_routes_with_parameters_are_not(apps):
    _, _, stack = apps
    assert {"/api/v1/users/me", "/api/v1/users/me/session", "/api/v1/users/me/tenants"} <= set(
        stack.table
    )
    assert not any("{" in path or "/auth/" in path for path in stack.table)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/users/me/session", "/api/v1/users/me", "/api/v1/users/me/tenants", "/api/v1/status"],
)
@pytest.mark.parametrize(
    "authorization", [f"Bearer {GOOD}", "Bearer forged", "Basic abc", None], ids=str
)
async def test_a_direct_route_answers_byte_for_byte_as_fastapi_does(apps, path, authorization):
    direct, routed, _ = apps
    headers = {"Authorization": authorization} if authorization else {}
    assert await _answer(direct, path, headers) == await _answer(routed, path, headers)


async def test_the_reply_is_the_contract_model_not_the_service_bytes(apps):
    direct, _, _ = apps
    status, _, body = await _answer(
        direct, "/api/v1/users/me/session", {"Authorization": f"Bearer {GOOD}"}
    )
    assert status == 200 and b"extra" not in body


@pytest.mark.parametrize("path", ["/api/v1/users/me/session/", "/api/v1/users/me/sessions"])
async def test_other_paths_go_through_the_router(apps, path):
    direct, routed, _ = apps
    headers = {"Authorization": f"Bearer {GOOD}"}
    assert await _answer(direct, path, headers) == await _answer(routed, path, headers)


def test_plain_def_endpoints_and_routes_with_parameters_are_left_to_fastapi():
    router = APIRouter()

    @router.get("/sync", response_model=Empty)
    def sync() -> Empty:
        return Empty()

    @router.get("/items/{item}", response_model=Empty)
    async def item(item: str) -> Empty:
        return Empty()

    @router.get("/query", response_model=Empty)
    async def query(q: str = "") -> Empty:
        return Empty()

    @router.get("/fine", response_model=Empty)
    async def fine(identity: Identity) -> Empty:
        return Empty()

    table = DirectRoutes(None, router.routes, DIRECT).table  # type: ignore[arg-type]
    assert set(table) == {"/fine"}


async def test_a_response_returned_by_the_endpoint_is_sent_as_it_is():
    app = FastAPI()

    @app.get("/raw", response_model=Empty)
    async def raw(_: Annotated[None, Depends(_nothing)]) -> Response:
        return Response(b"plain", media_type="text/plain", status_code=202)

    direct = DirectRoutes(app.router.middleware_stack, app.router.routes, {_nothing: _nothing})
    app.router.middleware_stack = direct
    assert "/raw" in direct.table
    answered = await _answer(app, "/raw", {})
    assert answered[0] == 202 and answered[2] == b"plain"
    app.router.middleware_stack = direct.app
    assert answered == await _answer(app, "/raw", {})


async def _nothing(request: Request) -> None:
    return None

"""Routes called directly (`saas.gateway.direct`) answer exactly as FastAPI answers them: the same
status, headers and bytes for a reply, a 401, a 422 for a bad path or query parameter, an
upstream error and an unreachable service, and the routes that need FastAPI still go through
it."""

from __future__ import annotations

import time
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from nats.errors import NoRespondersError
from starlette.routing import Mount

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
    "svc.tenancy.projects.list": b'{"data":{"items":[{"id":"p1","name":"One","description":"",'
    b'"created_by":"u1","created_at":"2026-11-29T15:00:00Z","updated_at":"2026-11-29T15:00:00Z"'
    b'}],"next_cursor":null}}',
    "svc.tenancy.projects.get": b'{"error":{"code":"not_found","message":"no such project"}}',
    "svc.tenancy.tenants.get": b'{"data":{"id":"t1"}}',
    "svc.audit.query": b'{"data":{"items":[],"next_cursor":"c2"}}',
}
TENANT_ROUTES = [
    "/api/v1/tenants/acme",
    "/api/v1/tenants/acme/projects",
    "/api/v1/tenants/acme/projects?limit=20",
    "/api/v1/tenants/acme/projects?limit=20&cursor=abc&unknown=1",
    "/api/v1/tenants/acme/projects?limit=0",
    "/api/v1/tenants/acme/projects?limit=101&cursor=" + "c" * 201,
    "/api/v1/tenants/acme/projects?limit=twenty",
    "/api/v1/tenants/acme/projects?limit=",
    "/api/v1/tenants/" + "s" * 101 + "/projects?limit=0",
    "/api/v1/tenants/acme/projects/p1",
    "/api/v1/tenants/acme/projects/" + "p" * 101,
    "/api/v1/tenants/ac%20me/projects",
    "/api/v1/audit-events?type=a&type=b&actor=u1&since=2026-11-29T10:00:00Z&limit=5",
    "/api/v1/audit-events?since=2026-11-29T10:00:00Z&until=2026-11-28T10:00:00Z",
    "/api/v1/audit-events?since=yesterday&limit=-1",
    "/api/v1/audit-events/verify?cursor=" + "v" * 501,
]


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


def test_the_hot_routes_are_direct_and_those_that_need_fastapi_are_not(apps):
    _, _, stack = apps
    assert {
        "/api/v1/users/me",
        "/api/v1/users/me/session",
        "/api/v1/users/me/tenants",
        "/api/v1/tenants/{slug}",
        "/api/v1/tenants/{slug}/projects",
        "/api/v1/tenants/{slug}/projects/{project_id}",
        "/api/v1/audit-events",
    } <= stack.paths()
    # Bodies (auth, creating), and routes with the `Tenant` dependency (its own parameters).
    assert not any("/auth/" in path or "/members" in path for path in stack.paths())
    assert "/api/v1/tenants/{slug}/audit-events" not in stack.paths()


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


@pytest.mark.parametrize("path", TENANT_ROUTES)
@pytest.mark.parametrize("authorization", [f"Bearer {GOOD}", "Bearer forged", None], ids=str)
async def test_a_route_with_parameters_answers_byte_for_byte_as_fastapi_does(
    apps, path, authorization
):
    direct, routed, _ = apps
    headers = {"Authorization": authorization} if authorization else {}
    assert await _answer(direct, path, headers) == await _answer(routed, path, headers)


async def test_a_bad_parameter_is_a_validation_problem_naming_it(apps):
    """Not merely equal to FastAPI's answer: the answer a client needs."""
    direct, _, _ = apps
    status, headers, body = await _answer(
        direct, "/api/v1/tenants/acme/projects?limit=0", {"Authorization": f"Bearer {GOOD}"}
    )
    assert status == 422 and ("content-type", "application/problem+json") in headers
    assert b'"loc":["query","limit"]' in body and b'"request_id":"same-id"' in body


async def test_the_latency_histogram_is_labelled_with_the_template(apps):
    direct, _, _ = apps
    auth = {"Authorization": f"Bearer {GOOD}"}
    assert (await _answer(direct, "/api/v1/tenants/acme/projects?limit=3", auth))[0] == 200
    text, _ = direct.state.process.metrics.render()
    assert (
        b'saas_api_request_duration_seconds_count{method="GET",'
        b'route="/api/v1/tenants/{slug}/projects",status="200"}' in text
    )


async def test_the_project_list_is_passed_on_as_tenancy_wrote_it(apps):
    """Relayed (`Upstream.relay`): tenancy's responder sends nothing but the contract model."""
    direct, _, _ = apps
    status, headers, body = await _answer(
        direct, "/api/v1/tenants/acme/projects", {"Authorization": f"Bearer {GOOD}"}
    )
    assert status == 200 and ("content-type", "application/json") in headers
    assert body == REPLIES["svc.tenancy.projects.list"][len(b'{"data":') : -1]


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

    @router.get("/items/{item}/detail", response_model=Empty)
    async def detail(item: str, identity: Identity, q: str = "") -> Empty:
        return Empty()

    @router.get("/numbers/{n:int}", response_model=Empty)
    async def number(n: int, identity: Identity) -> Empty:
        return Empty()

    @router.post("/fine/{item}", response_model=Empty)
    async def post(item: str, identity: Identity) -> Empty:
        return Empty()

    direct = DirectRoutes(None, router.routes, DIRECT)  # type: ignore[arg-type]
    # Plain path and query parameters are taken; a converter other than str, or another method,
    # is FastAPI's.
    assert direct.paths() == {"/fine", "/items/{item}", "/query", "/items/{item}/detail"}


def test_a_path_another_get_route_could_match_is_left_to_fastapi():
    router = APIRouter()

    @router.get("/tenants/{slug}", response_model=Empty)
    async def tenant(slug: str, identity: Identity) -> Empty:
        return Empty()

    @router.get("/tenants/mine", response_model=Empty)
    async def mine(identity: Identity) -> Empty:
        return Empty()

    @router.get("/tenants/{slug}/projects", response_model=Empty)
    async def projects(slug: str, identity: Identity) -> Empty:
        return Empty()

    docs = APIRouter()

    @docs.get("/{page}/{section}/projects")
    async def page(page: str, section: str) -> Response:
        return Response()

    direct = DirectRoutes(None, router.routes, DIRECT, others=docs.routes)  # type: ignore[arg-type]
    assert direct.paths() == set()
    alone = DirectRoutes(None, router.routes[2:], DIRECT)  # type: ignore[arg-type]
    assert alone.paths() == {"/tenants/{slug}/projects"}
    mounted = [Mount("/tenants", app=Response())]
    under_a_mount = DirectRoutes(None, router.routes[2:], DIRECT, others=mounted)  # type: ignore[arg-type]
    assert under_a_mount.paths() == set()


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

"""The hot routes, called without FastAPI's per-request machinery.

Routes such as `GET users/me/session` are one service call on behalf of the caller: nothing in
the path, the query or the body, and dependencies that only read the request (`Identity`,
`Tenancy`, ...). FastAPI spends more on such a request than the gateway's own work: it matches
the path against every route of every included router, solves the dependency tree (cache keys,
security scopes, generator checks), opens two exit stacks, validates the endpoint's model again
and renders it. For these routes `DirectRoutes` does what FastAPI would, directly: it finds the
route by method and path in a table made at start-up, calls the same dependency functions and
the same endpoint, and writes the reply model as FastAPI would (the same bytes and headers).

Everything around the route stays as it is: the edge's middleware before it, the route in
`scope["route"]` (for the latency histogram's template), and exceptions (401, upstream errors)
raised to the same problem handlers. The routes are still declared with FastAPI, so the OpenAPI
document is unchanged; a route the table does not take (path parameters, a query, a body, other
dependencies, another response class) goes through FastAPI as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, serialize_response
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Dependency = Callable[[Request], Awaitable[Any]]
_JSON = (b"content-type", b"application/json")


class _Direct:
    """One route: its dependencies by parameter name, its endpoint, and how its reply is sent."""

    def __init__(self, route: APIRoute, dependencies: dict[str, Dependency]) -> None:
        self.route = route
        self.endpoint = route.endpoint
        self.dependencies = list(dependencies.items())
        self.request_param = route.dependant.request_param_name
        self.model = route.response_model if isinstance(route.response_model, type) else None
        self.status = route.status_code or 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        values = {name: await call(request) for name, call in self.dependencies}
        if self.request_param:
            values[self.request_param] = request
        result = await self.endpoint(**values)
        if isinstance(result, Response):  # as FastAPI: a response is sent as it is
            await result(scope, receive, send)
            return
        if self.model is not None and type(result) is self.model:
            body = result.__pydantic_serializer__.to_json(result, by_alias=True)
        else:  # anything else is FastAPI's to check and render
            content = await serialize_response(
                field=self.route.response_field, response_content=result
            )
            body = JSONResponse(content).body
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-length", b"%d" % len(body)), _JSON],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _eligible(route: APIRoute, known: dict[Callable[..., Any], Dependency]) -> bool:
    d = route.dependant
    if (
        not inspect.iscoroutinefunction(route.endpoint)  # FastAPI runs a plain def in a thread
        or d.path_params
        or d.query_params
        or d.header_params
        or d.cookie_params
        or d.body_params
        or d.response_param_name
        or d.background_tasks_param_name
        or d.security_scopes_param_name
        or d.websocket_param_name
        or d.http_connection_param_name
        or route.methods != {"GET"}
        or "{" in route.path
        or route.status_code not in (None, 200)
        or not isinstance(route.response_class, DefaultPlaceholder)
        or route.response_class.value is not JSONResponse
        or route.response_model_include is not None
        or route.response_model_exclude is not None
        or not route.response_model_by_alias
        or route.response_model_exclude_unset
        or route.response_model_exclude_defaults
        or route.response_model_exclude_none
    ):
        return False
    return all(sub.call in known and sub.name for sub in d.dependencies)


class DirectRoutes:
    """ASGI: the table's routes directly, every other request to `app` (FastAPI's router)."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Iterable[Any],
        dependencies: dict[Callable[..., Any], Dependency],
    ) -> None:
        self.app = app
        self.table: dict[str, _Direct] = {}
        for route in routes:
            if isinstance(route, APIRoute) and _eligible(route, dependencies):
                calls = {sub.name: dependencies[sub.call] for sub in route.dependant.dependencies}
                self.table[route.path] = _Direct(route, calls)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            direct = self.table.get(scope["path"])
            if direct is not None:
                scope["route"] = direct.route
                scope["endpoint"] = direct.endpoint
                scope["path_params"] = {}
                await direct(scope, receive, send)
                return
        await self.app(scope, receive, send)

"""The hot routes, called without FastAPI's per-request machinery.

Routes such as `GET users/me/session` or `GET tenants/{slug}/projects` are one service call on
behalf of the caller: path and query parameters, no body, and dependencies that only read the
request (`Identity`, `Tenancy`, ...). FastAPI spends more on such a request than the gateway's
own work: it matches the path against every route of every included router, solves the
dependency tree (cache keys, security scopes, generator checks), opens two exit stacks,
validates the endpoint's model again and renders it. For these routes `DirectRoutes` does what
FastAPI would, directly: it finds the route by method and path in tables made at start-up (a
dictionary for fixed paths, the templates' own patterns grouped by their number of segments for
the rest), calls the same dependency functions, reads and validates the path and query
parameters as FastAPI does (so a bad one is the same 422, raised as the same
`RequestValidationError`), calls the same endpoint, and writes the reply model as FastAPI would
(the same bytes and headers).

Everything around the route stays as it is: the edge's middleware before it, the route and its
path parameters in the scope (the latency histogram is labelled with the route's template), and
exceptions (401, 422, upstream errors) raised to the same problem handlers. The routes are still
declared with FastAPI, so the OpenAPI document is unchanged. A route the tables do not take (a
body, headers or cookies as parameters, other dependencies, another method or response class, a
path another GET route could also match) goes through FastAPI as before.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from copy import deepcopy
from typing import Any

from fastapi._compat import ModelField
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.utils import (
    _get_param_aliases,
    _get_param_model,
    _is_json_field,
    field_annotation_is_sequence,
    get_missing_field_error,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, serialize_response
from starlette.convertors import StringConvertor
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Dependency = Callable[[Request], Awaitable[Any]]
_JSON = (b"content-type", b"application/json")
_PARAMETER = re.compile(r"^\{[^}]*\}$")


class _Parameter:
    """One path or query parameter, read and validated as FastAPI's `request_params_to_args`
    does, with what that works out on every request (the name to read, whether the value is a
    list) worked out once."""

    def __init__(self, field: ModelField) -> None:
        ((_, self.alias),) = _get_param_aliases(field)
        self.field = field
        self.name = field.name
        self.loc = (field.field_info.in_.value, self.alias)  # type: ignore[attr-defined]
        self.sequence = field_annotation_is_sequence(field.field_info.annotation)
        self.as_list = self.sequence and not _is_json_field(field)
        self.required = field.field_info.is_required()
        self.validate_default = field.field_info.validate_default

    @staticmethod
    def takes(field: ModelField) -> bool:
        """Whether it is a plain parameter (not a model of several, one name to read it by)."""
        return _get_param_model(field) is None and len(_get_param_aliases(field)) == 1

    def read(self, received: Mapping[str, Any], values: dict[str, Any], errors: list[Any]) -> None:
        if self.as_list and isinstance(received, ImmutableMultiDict):
            value = received.getlist(self.alias)
        else:
            value = received.get(self.alias)
        if value is None or (self.sequence and len(value) == 0):
            if self.required:
                errors.append(get_missing_field_error(loc=self.loc))
                return
            value = deepcopy(self.field.default)
            if not self.validate_default:
                values[self.name] = value
                return
        value, problems = self.field.validate(value, values, loc=self.loc)
        if problems:
            errors.extend(problems)
        else:
            values[self.name] = value


def _read(
    parameters: Sequence[_Parameter], received: Mapping[str, Any], errors: list[Any]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for parameter in parameters:
        parameter.read(received, values, errors)
    return values


class _Direct:
    """One route: its dependencies by parameter name, its parameters, its endpoint, and how its
    reply is sent."""

    def __init__(self, route: APIRoute, dependencies: dict[str, Dependency]) -> None:
        self.route = route
        self.endpoint = route.endpoint
        self.dependencies = list(dependencies.items())
        self.request_param = route.dependant.request_param_name
        self.path = [_Parameter(field) for field in route.dependant.path_params]
        self.query = [_Parameter(field) for field in route.dependant.query_params]
        self.model = route.response_model if isinstance(route.response_model, type) else None
        self.status = route.status_code or 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        # FastAPI's order: the dependencies first (a 401 wins over a bad parameter), then every
        # parameter, their errors together in one 422.
        values = {name: await call(request) for name, call in self.dependencies}
        if self.path or self.query:
            errors: list[Any] = []
            path_values = _read(self.path, scope["path_params"], errors)
            query_values = _read(self.query, request.query_params, errors) if self.query else {}
            if errors:
                raise RequestValidationError(errors)
            values.update(path_values)
            values.update(query_values)
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
        or d.header_params
        or d.cookie_params
        or d.body_params
        or d.response_param_name
        or d.background_tasks_param_name
        or d.security_scopes_param_name
        or d.websocket_param_name
        or d.http_connection_param_name
        or route.methods != {"GET"}
        or not all(isinstance(c, StringConvertor) for c in route.param_convertors.values())
        or not all(_Parameter.takes(f) for f in (*d.path_params, *d.query_params))
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


def _segments(path: str) -> list[str | None]:
    """A template's segments, None for a parameter (it matches any one segment)."""
    return [None if _PARAMETER.match(part) else part for part in path.split("/")]


def _overlap(a: list[str | None], b: list[str | None], *, prefix: bool = False) -> bool:
    """Whether some path could match both templates (or template `a` and what is under `b`)."""
    if len(a) < len(b) or (len(a) > len(b) and not prefix):
        return False
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=False))


def _answers_get(route: Any) -> bool:
    methods = getattr(route, "methods", None)
    return isinstance(getattr(route, "path", None), str) and (not methods or "GET" in methods)


def _mounted(route: Any) -> bool:
    """A mount (no methods of its own) answers everything under its path."""
    return not hasattr(route, "methods")


class DirectRoutes:
    """ASGI: the tables' routes directly, every other request to `app` (FastAPI's router).

    `routes` are the candidates; `others` every other route the app has (its documentation,
    health probes, ...): a candidate whose path another GET route could also match is left to
    FastAPI, which decides between them by their order, so the tables never need to."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Iterable[Any],
        dependencies: dict[Callable[..., Any], Dependency],
        others: Iterable[Any] = (),
    ) -> None:
        self.app = app
        self.table: dict[str, _Direct] = {}  # fixed paths
        self.templates: dict[int, list[tuple[re.Pattern[str], _Direct]]] = {}  # by segments
        routes = list(routes)
        gets = [
            (r, _segments(r.path.rstrip("/") if _mounted(r) else r.path), _mounted(r))
            for r in [*routes, *others]
            if _answers_get(r)
        ]
        for route in routes:
            if not (isinstance(route, APIRoute) and _eligible(route, dependencies)):
                continue
            mine = _segments(route.path)
            if any(
                other is not route and _overlap(mine, shape, prefix=mount)
                for other, shape, mount in gets
            ):
                continue
            calls = {sub.name: dependencies[sub.call] for sub in route.dependant.dependencies}
            direct = _Direct(route, calls)  # type: ignore[arg-type]
            if route.param_convertors:
                by_count = self.templates.setdefault(route.path.count("/"), [])
                by_count.append((route.path_regex, direct))
            else:
                self.table[route.path] = direct

    def paths(self) -> set[str]:
        """Every route template called directly."""
        by_template = (d.route.path for ds in self.templates.values() for _, d in ds)
        return {*self.table, *by_template}

    def _find(self, path: str) -> tuple[_Direct, dict[str, str]] | None:
        """The route called directly for `path`, with its path parameters."""
        direct = self.table.get(path)
        if direct is not None:
            return direct, {}
        for pattern, direct in self.templates.get(path.count("/"), ()):
            match = pattern.match(path)
            if match is not None:
                return direct, match.groupdict()  # strings: str convertors only
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            found = self._find(scope["path"])
            if found is not None:
                direct, scope["path_params"] = found
                scope["route"] = direct.route
                scope["endpoint"] = direct.endpoint
                await direct(scope, receive, send)
                return
        await self.app(scope, receive, send)

"""Every error leaves the gateway as RFC 9457 `application/problem+json`, and says so in OpenAPI.

Routes declare which problems they may answer (`problems(401, 404, ...)`); every route of the API
also may answer 429 (rate limits), 413 and 504 (hygiene), and those that call a service 503 and
504 (no responder, no reply in time). `problem_openapi` publishes each as `application/problem+json`
with the `Problem` schema, replacing FastAPI's own 422 shape, which the gateway never sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from saas.common.contracts.problem import Problem
from saas.common.errors import HTTP_STATUS, TITLES, ErrorCode, ServiceError, problem
from saas.common.logging import get_logger

log = get_logger(__name__)
PROBLEM_JSON = "application/problem+json"

_CODE_FOR_STATUS = {status: code for code, status in HTTP_STATUS.items()}

# Why each status may come back, as the OpenAPI document says it.
WHY = {
    400: "The request is malformed.",
    401: "No access token, or one that is invalid or expired (`WWW-Authenticate: Bearer`).",
    403: "The caller may not do this.",
    404: "No such resource, or the caller may not know it exists.",
    409: "The request conflicts with the current state.",
    413: "The body is larger than the gateway accepts.",
    422: "The request failed validation; `errors` says where.",
    429: "A rate limit was reached; `Retry-After` says when to try again.",
    503: "A service needed for this is not available (or rate limits cannot be checked).",
    504: "A service did not answer in time, or the request took too long.",
}
# What every route of the API may answer, whatever it does: rate limits (429, and 503 while they
# cannot be checked and the fallback is to refuse), the request timeout (504).
EVERY_ROUTE = (429, 503, 504)
# ...and every route that calls a service over the bus.
UPSTREAM = (503, 504)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: the problems it may answer, besides those of every route."""
    return {
        status: {"model": Problem, "description": WHY.get(status, TITLES[_CODE_FOR_STATUS[status]])}
        for status in sorted({*statuses, *EVERY_ROUTE})
    }


def problem_openapi(app: FastAPI) -> None:
    """Serve an OpenAPI document in which every error response is `application/problem+json`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        ref = {"$ref": "#/components/schemas/Problem"}
        for path in doc.get("paths", {}).values():
            for operation in path.values():
                for status, response in operation.get("responses", {}).items():
                    if status.isdigit() and int(status) >= 400:
                        response["content"] = {PROBLEM_JSON: {"schema": ref}}
                        if int(status) == 422:
                            response["description"] = WHY[422]
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def problem_response(
    request: Request, code: ErrorCode, detail: str, *, status: int | None = None, **extra: object
) -> JSONResponse:
    doc = problem(
        code,
        detail,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        **extra,
    )
    if status is not None:
        doc["status"] = status
    return JSONResponse(doc, status_code=doc["status"], media_type=PROBLEM_JSON)


async def send_problem(
    scope: Scope,
    send: Send,
    code: ErrorCode,
    detail: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A problem response from ASGI middleware, before the app has answered."""
    doc = problem(
        code,
        detail,
        instance=scope.get("path"),
        request_id=scope.get("state", {}).get("request_id"),
    )
    body = orjson.dumps(doc)
    await send(
        {
            "type": "http.response.start",
            "status": doc["status"],
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def www_authenticate(request: Request, exc: ServiceError) -> str:
    """RFC 6750: every 401 names the scheme; `invalid_token` when a token was sent and refused."""
    token_sent = getattr(exc, "token_sent", None)
    if token_sent is None:
        token_sent = request.headers.get("authorization", "")[:7].lower() == "bearer "
    return 'Bearer error="invalid_token"' if token_sent else "Bearer"


def install_problem_handlers(app: FastAPI) -> None:
    problem_openapi(app)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        response = problem_response(
            request,
            exc.code,
            exc.message,
            **({"errors": exc.details.get("errors")} if exc.details else {}),
        )
        if exc.code is ErrorCode.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = www_authenticate(request, exc)
        retry_after = exc.details.get("retry_after") if exc.details else None
        if isinstance(retry_after, int) and exc.code is ErrorCode.RATE_LIMITED:
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return problem_response(
            request, ErrorCode.VALIDATION_ERROR, "request failed validation", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_FOR_STATUS.get(exc.status_code, ErrorCode.BAD_REQUEST)
        response = problem_response(request, code, str(exc.detail), status=exc.status_code)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(request, ErrorCode.INTERNAL, "internal error")

"""Every error leaves the gateway as RFC 9457 `application/problem+json`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from saas.common.errors import HTTP_STATUS, ErrorCode, ServiceError, problem
from saas.common.logging import get_logger

log = get_logger(__name__)
PROBLEM_JSON = "application/problem+json"

_CODE_FOR_STATUS = {status: code for code, status in HTTP_STATUS.items()}


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


def www_authenticate(request: Request, exc: ServiceError) -> str:
    """RFC 6750: every 401 names the scheme; `invalid_token` when a token was sent and refused."""
    token_sent = getattr(exc, "token_sent", None)
    if token_sent is None:
        token_sent = request.headers.get("authorization", "")[:7].lower() == "bearer "
    return 'Bearer error="invalid_token"' if token_sent else "Bearer"


def install_problem_handlers(app: FastAPI) -> None:
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

"""The one error model: stable codes services reply with, and their HTTP mapping.

Services raise `ServiceError(ErrorCode.X, message)`; the bus carries `{"code", "message",
"details"}`; the gateway turns it into RFC 9457 `application/problem+json` with the status below.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    VALIDATION_ERROR = "validation_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal_error"
    SERVICE_UNAVAILABLE = "service_unavailable"
    TIMEOUT = "timeout"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.HEADERS_TOO_LARGE: 431,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
}

TITLES: dict[ErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "Bad request",
    ErrorCode.VALIDATION_ERROR: "Validation failed",
    ErrorCode.UNAUTHORIZED: "Authentication required",
    ErrorCode.FORBIDDEN: "Forbidden",
    ErrorCode.NOT_FOUND: "Not found",
    ErrorCode.METHOD_NOT_ALLOWED: "Method not allowed",
    ErrorCode.CONFLICT: "Conflict",
    ErrorCode.PAYLOAD_TOO_LARGE: "Payload too large",
    ErrorCode.HEADERS_TOO_LARGE: "Request headers too large",
    ErrorCode.RATE_LIMITED: "Too many requests",
    ErrorCode.INTERNAL: "Internal error",
    ErrorCode.SERVICE_UNAVAILABLE: "Service unavailable",
    ErrorCode.TIMEOUT: "Upstream timeout",
}


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ServiceError(Exception):
    """An expected failure with a stable code, safe to show to the caller."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details = details or {}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def body(self) -> ErrorBody:
        return ErrorBody(code=self.code, message=self.message, details=self.details)

    @classmethod
    def from_body(cls, body: ErrorBody) -> ServiceError:
        return cls(body.code, body.message, body.details)

    def __repr__(self) -> str:
        return f"ServiceError({self.code.value!r}, {self.message!r})"


def problem(
    code: ErrorCode, detail: str, *, instance: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An RFC 9457 problem document for an error code."""
    doc: dict[str, Any] = {
        "type": f"urn:saas:problem:{code.value}",
        "title": TITLES[code],
        "status": HTTP_STATUS[code],
        "detail": detail,
        "code": code.value,
    }
    if instance:
        doc["instance"] = instance
    doc.update({k: v for k, v in extra.items() if v is not None})
    return doc

"""The error body of every HTTP error: RFC 9457 `application/problem+json`.

`type` is stable per error code (`urn:saas:problem:<code>`), so clients branch on it (or on
`code`) and never on `detail`, which is for people. `saas.common.errors.problem` builds it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from saas.common.errors import ErrorCode

PROBLEM_TYPE_PREFIX = "urn:saas:problem:"


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str | None = None
    type: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "type": "urn:saas:problem:not_found",
                "title": "Not found",
                "status": 404,
                "detail": "no such tenant",
                "code": "not_found",
                "instance": "/api/v1/tenants/acme/members",
                "request_id": "4f7c0d0c2b5e4c0f9f4c5d7a1e2b3c4d",
            }
        },
    )

    type: str = Field(
        pattern=r"^urn:saas:problem:[a-z_]+$",
        description="stable per code: urn:saas:problem:<code>",
    )
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    code: ErrorCode
    instance: str | None = Field(default=None, description="the path of the request")
    request_id: str | None = Field(default=None, description="also sent as X-Request-Id")
    errors: list[ValidationIssue] | list[dict[str, Any]] | None = Field(
        default=None, description="what failed validation (422)"
    )

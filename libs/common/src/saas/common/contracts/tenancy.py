"""Requests to and replies from tenancy (`svc.tenancy.*`), and the HTTP bodies of its routes.

The gateway publishes these models in its OpenAPI document as they are, so a field added here is
a field of the public API. Operations on a tenant take its slug: tenancy resolves it itself (one
bus round trip per request), and checks the caller's membership before any tenant data is read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from saas.common.contracts.identity import Role
from saas.common.contracts.tenant_status import TenantStatus
from saas.common.tenant_names import SLUG_MAX, SLUG_MIN

IDEMPOTENCY_KEY_MAX = 200
PROJECT_NAME_MAX = 200
PROJECT_DESCRIPTION_MAX = 2000
PAGE_MAX = 100


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_control_characters(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters (line breaks, tabs, NUL, ...)")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# A name is one line of text, trimmed, never blank.
Name = Annotated[
    str,
    Field(min_length=1, max_length=PROJECT_NAME_MAX),
    AfterValidator(lambda v: v.strip()),
    AfterValidator(_no_control_characters),
    AfterValidator(lambda v: v or _blank()),
]


def _blank() -> str:
    raise ValueError("must not be blank")


Description = Annotated[str, Field(max_length=PROJECT_DESCRIPTION_MAX), AfterValidator(_no_nul)]
Slug = Annotated[str, Field(min_length=1, max_length=100)]


# -- tenants -------------------------------------------------------------------------------------
class ResolveTenant(Strict):
    """Which tenant a slug names (the gateway's member routes take slugs; identity takes ids)."""

    slug: Slug


class TenantRef(Strict):
    slug: Slug


class NewTenant(Strict):
    """The body of `POST tenants`."""

    slug: str = Field(
        min_length=SLUG_MIN,
        max_length=SLUG_MAX,
        description="lowercase letters, digits and single hyphens; names the tenant in URLs "
        "and its schema; not a reserved word (admin, api, public, template, ...)",
        examples=["acme"],
    )
    name: Name = Field(examples=["Acme Corporation"])


class CreateTenant(NewTenant):
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=r"^[\x21-\x7e]+$",
        description="the Idempotency-Key header: the same key from the same user gives the "
        "same tenant",
    )


class TenantInfo(BaseModel):
    id: str
    slug: str
    name: str
    status: TenantStatus
    created_at: datetime
    status_changed_at: datetime | None = None
    failure_reason: str | None = Field(
        default=None, description="why provisioning failed (status failed only)"
    )
    role: Role | None = Field(default=None, description="the caller's role, if a member")


class Tenants(BaseModel):
    items: list[TenantInfo]


# -- projects: the example of data inside a tenant's schema ---------------------------------------
class NewProject(Strict):
    """The body of `POST tenants/{slug}/projects`."""

    name: Name = Field(examples=["Website relaunch"])
    description: Description = ""


CHANGEABLE = frozenset({"name", "description"})


class ProjectChanges(Strict):
    """The body of `PATCH tenants/{slug}/projects/{id}`: the fields to change, at least one."""

    name: Name | None = None
    description: Description | None = None

    @field_validator("name", "description")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        # Runs only for fields that were sent: leaving a field out keeps it, null is a mistake.
        if value is None:
            raise ValueError("cannot be null (leave the field out to keep it)")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.model_fields_set & CHANGEABLE:
            raise ValueError("nothing to change: give name, description or both")
        return self

    @model_serializer(mode="wrap")
    def _only_what_was_sent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # On the bus too, a field left out stays left out (rather than becoming a null).
        sent = self.model_fields_set
        return {k: v for k, v in handler(self).items() if k not in CHANGEABLE or k in sent}


class Project(BaseModel):
    id: str
    name: str
    description: str
    created_by: str
    created_at: datetime
    updated_at: datetime


class Projects(BaseModel):
    items: list[Project]
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next page; null on the last page"
    )


class ListProjects(TenantRef):
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=20, ge=1, le=PAGE_MAX)


class CreateProject(TenantRef, NewProject):
    pass


class ProjectRef(TenantRef):
    project_id: str = Field(min_length=1, max_length=100)


class UpdateProject(ProjectRef, ProjectChanges):
    pass

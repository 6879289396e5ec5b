"""Requests to and replies from tenancy (`svc.tenancy.*`), and the HTTP bodies of its routes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class TenantStatus(StrEnum):
    PROVISIONING = "provisioning"
    READY = "ready"
    FAILED = "failed"
    SUSPENDED = "suspended"
    DELETING = "deleting"
    DELETED = "deleted"


class ResolveTenant(BaseModel):
    """Which tenant a slug names (the gateway's routes take slugs; the services take ids)."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(min_length=1, max_length=100)


class TenantInfo(BaseModel):
    id: str
    slug: str
    name: str
    status: TenantStatus
    created_at: datetime

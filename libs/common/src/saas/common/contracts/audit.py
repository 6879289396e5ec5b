"""Requests to and replies from the audit service (`svc.audit.query`, `svc.audit.verify`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

MAX_PAGE_SIZE = 200


NO_TENANT_DOC = '"" reads the events of no tenant (logins, password resets): platform admins only'


class AuditQuery(BaseModel):
    tenant_id: str = Field(max_length=100, description=NO_TENANT_DOC)
    types: list[str] = Field(default_factory=list, max_length=50)
    actor_id: str | None = Field(default=None, max_length=200)
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)

    @model_validator(mode="after")
    def _range(self) -> AuditQuery:
        if self.since and self.until and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class AuditEntry(BaseModel):
    event_id: str
    tenant_seq: int
    type: str
    source: str
    subject: str | None
    actor_type: str
    actor_id: str
    occurred_at: datetime
    recorded_at: datetime
    correlation_id: str | None
    data_version: int
    payload: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = None


class AuditVerifyRequest(BaseModel):
    """One page of a chain's verification; ask again with `next_cursor` until `complete`.
    Each page is its own short transaction, so verifying a long chain holds nothing for long."""

    tenant_id: str = Field(max_length=100, description=NO_TENANT_DOC)
    cursor: str | None = Field(default=None, max_length=500)
    max_entries: int = Field(default=20_000, ge=1, le=200_000)


class BrokenLinkReport(BaseModel):
    tenant_seq: int
    event_id: str  # empty when the entry is missing
    reason: str


class AuditVerification(BaseModel):
    tenant_id: str
    ok: bool
    checked: int  # entries found intact before the first broken one
    checkpoints: int = 0  # checkpoints of the chain it was checked against
    first_broken: BrokenLinkReport | None = None
    complete: bool = True  # false: the chain goes on; ask again with `next_cursor`
    next_cursor: str | None = None

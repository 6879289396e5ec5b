"""What workflows and activities pass each other: dataclasses, so fields can be added later
without breaking histories already recorded (a new field needs a default)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TenantInput:
    tenant_id: str
    slug: str
    name: str
    created_by: str | None = None  # the owner-to-be; None for tenants from before creators


@dataclass
class FailedStep:
    tenant: TenantInput
    step: str
    reason: str

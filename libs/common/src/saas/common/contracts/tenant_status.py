"""A tenant's statuses, in a module of their own: code that needs only them (an operator's
command) does not pay for building the contracts' models. `saas.common.contracts.tenancy`
exports the same enum."""

from __future__ import annotations

from enum import StrEnum


class TenantStatus(StrEnum):
    PROVISIONING = "provisioning"
    READY = "ready"
    FAILED = "failed"
    SUSPENDED = "suspended"
    DELETING = "deleting"
    DELETED = "deleted"

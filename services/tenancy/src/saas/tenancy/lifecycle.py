"""A tenant's statuses and the only ways from one to another, as a table.

    provisioning ──► ready ◄──► suspended
       │    ▲          │            │
       ▼    │ retry    ▼            │
      failed ──────► deleting ◄─────┘
                       │
                       ▼
                    deleted

A status changes only through a conditional UPDATE (`... WHERE status IN (the statuses it may
come from)`), so of two changes racing one wins and the other is told `conflict`: nothing is
overwritten silently. Pure: the queries are in `saas.tenancy.store.records`.
"""

from __future__ import annotations

from saas.common.contracts.tenant_status import TenantStatus
from saas.common.errors import ErrorCode, ServiceError

S = TenantStatus
TRANSITIONS: dict[TenantStatus, frozenset[TenantStatus]] = {
    S.PROVISIONING: frozenset({S.READY, S.FAILED}),
    S.READY: frozenset({S.SUSPENDED, S.DELETING}),
    S.SUSPENDED: frozenset({S.READY, S.DELETING}),
    S.FAILED: frozenset({S.PROVISIONING, S.DELETING}),  # retry, or give up
    S.DELETING: frozenset({S.DELETED}),
    S.DELETED: frozenset(),
}
# A workflow should be running for a tenant in these; the reconciler starts it again if not.
IN_FLIGHT = frozenset({S.PROVISIONING, S.DELETING})
# Statuses whose schema exists and should be at the migrations' head.
WITH_SCHEMA = frozenset({S.READY, S.SUSPENDED, S.PROVISIONING})


def can_move(current: TenantStatus, new: TenantStatus) -> bool:
    return new in TRANSITIONS[current]


def sources(new: TenantStatus) -> frozenset[TenantStatus]:
    """The statuses a tenant may reach `new` from."""
    return frozenset(s for s, targets in TRANSITIONS.items() if new in targets)


def check_transition(current: TenantStatus, new: TenantStatus) -> None:
    """`conflict` unless a tenant that is `current` may become `new`."""
    if not can_move(current, new):
        raise ServiceError(
            ErrorCode.CONFLICT,
            f"a tenant that is {current.value} cannot become {new.value}",
            {"status": current.value},
        )

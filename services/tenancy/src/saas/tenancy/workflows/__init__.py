"""Tenancy's Temporal workflows (`provisioning`, `deletion`) and their activities, run by
`saas tenancy worker`. Workflow ids derive from the tenant's id, so one tenant never has two
provisionings (or two deletions) running at once."""

PROVISIONING_WORKFLOW = "TenantProvisioningWorkflow"
DELETION_WORKFLOW = "TenantDeletionWorkflow"


def provisioning_id(tenant_id: str) -> str:
    return f"tenant-provisioning-{tenant_id}"


def deletion_id(tenant_id: str) -> str:
    return f"tenant-deletion-{tenant_id}"

"""What the deployment files already use from the tenancy service's next release.

The manifests, compose files, alert rules and docs are written for it (the release step runs
`saas tenants migrate-all`, the worker keeps backups in BACKUP_DIR, alerts watch provisioning).
Until that code is here, the checks that compare the files with the code accept these names, and
only while the code lacks them: once it has them, they are checked like everything else, and
this module can go.
"""

from __future__ import annotations

# `saas tenants ...`: migrate-all (the release step), backup and restore (docs/production.md).
COMMANDS = frozenset({"tenants"})

# The saas-tenancy ConfigMap's settings.
SETTINGS = frozenset({"TENANT_CACHE_SECONDS", "BACKUP_DIR", "PG_BIN_DIR"})

# The worker's provisioning metrics, as prometheus_client exports them: a histogram declared as
# `tenant_provisioning_duration_seconds` (with a 300 s bucket) and a counter declared as
# `tenant_provisioning_failures` (label `step`), in the `saas` namespace.
METRICS = frozenset(
    {
        "saas_tenant_provisioning_duration_seconds_bucket",
        "saas_tenant_provisioning_duration_seconds_count",
        "saas_tenant_provisioning_duration_seconds_sum",
        "saas_tenant_provisioning_failures_total",
    }
)

"""TenantDeletionWorkflow: from a `deleting` tenant to a `deleted` one whose schema is gone and
whose data is kept in a backup.

Back up the schema (pg_dump), drop it, mark the tenant deleted and publish `tenant.deleted` (in
one transaction; identity then removes its memberships). Nothing is destroyed before the backup
is on disk, and every step retries until it succeeds, with up to five minutes between attempts
(a missing pg_dump or a full disk waits for an operator; the tenant stays `deleting`, the
attempt's error is in `public.workflow_executions` and in Temporal's UI). These are regular
activities: a backup may take long, and each step's progress is then visible on its own.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from saas.tenancy.workflows import DELETION_WORKFLOW
    from saas.tenancy.workflows.inputs import TenantInput

UNTIL_DONE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=0,  # unlimited
)


@workflow.defn(name=DELETION_WORKFLOW)
class TenantDeletionWorkflow:
    @workflow.run
    async def run(self, tenant: TenantInput) -> str:
        backup = await workflow.execute_activity(
            "back_up_schema",
            tenant,
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=UNTIL_DONE,
        )
        for step in ("drop_schema", "mark_deleted"):
            await workflow.execute_activity(
                step, tenant, start_to_close_timeout=timedelta(minutes=5), retry_policy=UNTIL_DONE
            )
        return str(backup)

"""TenantProvisioningWorkflow: from a `provisioning` tenant to a `ready` one, or a `failed` one
with nothing left behind.

Steps, each an idempotent activity with its own timeout and retries: create the schema (a clone
of the template), bring it to the migrations' head (only when the clone says it is behind: the
template is kept at head, so this is the exception), seed its defaults, make the creator its
owner (identity), mark it ready and publish `tenant.created` in one transaction. A step that fails for
good (or whose retries run out) is compensated: the schema is dropped and the tenant marked failed
with the reason, publishing `tenant.provisioning_failed`; `POST tenants/{slug}/retry` runs the
workflow again.

The steps are local activities: they run in the worker that runs the workflow, with their
results recorded in the workflow's history, so a provisioning costs Temporal one workflow task
instead of a round trip through the server per step. All are short (a clone is a few
milliseconds); a worker killed mid-way leaves the workflow task to time out, and the next worker
replays the history and runs again the steps whose results were not recorded, which is why every
step is idempotent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from saas.tenancy.workflows import PROVISIONING_WORKFLOW
    from saas.tenancy.workflows.inputs import FailedStep, TenantInput


def _retries(attempts: int, longest: float = 10.0) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=longest),
        maximum_attempts=attempts,
    )


def _options(seconds: float, attempts: int, longest: float = 10.0) -> dict[str, Any]:
    return {
        "start_to_close_timeout": timedelta(seconds=seconds),
        "retry_policy": _retries(attempts, longest),
    }


CREATE_SCHEMA = _options(30, 5)
MIGRATE_SCHEMA = _options(300, 3)  # a subprocess runs the migrations the template lacked
# (activity, options): the rest of the provisioning, in order.
STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("seed_defaults", _options(10, 5)),
    ("add_owner", _options(10, 8)),  # identity may be restarting: about a minute of retries
    ("mark_ready", _options(10, 10)),
)
# Compensation must happen: many attempts, spread over minutes.
COMPENSATION = _options(30, 20, longest=30.0)


@workflow.defn(name=PROVISIONING_WORKFLOW)
class TenantProvisioningWorkflow:
    @workflow.run
    async def run(self, tenant: TenantInput) -> str:
        step = "create_schema"
        try:
            behind = await workflow.execute_local_activity(step, tenant, **CREATE_SCHEMA)
            if behind:  # cloned from a template a release behind this worker's code
                step = "migrate_schema"
                await workflow.execute_local_activity(step, tenant, **MIGRATE_SCHEMA)
            for step, options in STEPS:
                await workflow.execute_local_activity(step, tenant, **options)
        except CancelledError:
            raise
        except FailureError as failure:  # a local activity's own error (or ActivityError)
            reason = f"{step}: {_message(failure)}"[:500]
            await workflow.execute_local_activity("drop_schema", tenant, **COMPENSATION)
            failed = FailedStep(tenant=tenant, step=step, reason=reason)
            await workflow.execute_local_activity("mark_failed", failed, **COMPENSATION)
            raise ApplicationError(reason, type="ProvisioningFailed", non_retryable=True) from None
        return "ready"


def _message(failure: FailureError) -> str:
    if isinstance(failure, ActivityError) and failure.cause is not None:
        failure = failure.cause
    return failure.message

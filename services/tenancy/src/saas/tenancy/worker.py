"""Wires the tenancy worker process: it runs tenancy's workflows and their activities."""

from __future__ import annotations

from temporalio.worker import PollerBehaviorSimpleMaximum, UnsandboxedWorkflowRunner

from saas.common.migrations import find_alembic_ini
from saas.common.process import ServiceProcess
from saas.common.settings import AppEnv
from saas.common.temporal import TemporalWorker
from saas.tenancy import __version__
from saas.tenancy.backups import Server
from saas.tenancy.cli import WORKER
from saas.tenancy.settings import WorkerSettings
from saas.tenancy.workflows.activities import TenantSteps
from saas.tenancy.workflows.deletion import TenantDeletionWorkflow
from saas.tenancy.workflows.faults import Faults
from saas.tenancy.workflows.provisioning import TenantProvisioningWorkflow

__all__ = ["WorkerSettings", "build"]

# New workflows arrive on the task queue itself, not on this worker's sticky queue. By default
# one poller in five asks the task queue, one task per round trip, so fifty tenants created at
# once waited in line for seconds before their first step. A provisioning runs in one workflow
# task (its steps are local activities), so the sticky queue matters little: as many pollers on
# each, ten in all.
WORKFLOW_TASK_POLLERS = PollerBehaviorSimpleMaximum(maximum=10)
NONSTICKY_TO_STICKY = 1.0


def build(settings: WorkerSettings | None = None) -> ServiceProcess:
    settings = settings or WorkerSettings.load()
    process = ServiceProcess(WORKER, __version__, settings)
    faults = settings.tenancy_test_faults if settings.app_env is AppEnv.TEST else None
    steps = TenantSteps(
        process.db,
        process.client,
        process.metrics,
        ini=find_alembic_ini(),
        database_url=settings.database_url,
        server=Server(settings.database_url, settings.database_ssl_mode, settings.pg_bin_dir),
        backup_dir=settings.backup_dir,
        faults=Faults(faults),
    )
    process.add(
        TemporalWorker(
            process.temporal,
            task_queue=settings.temporal_task_queue,
            workflows=[TenantProvisioningWorkflow, TenantDeletionWorkflow],
            activities=steps.all(),
            graceful_timeout=settings.shutdown_timeout,
            workflow_runner=UnsandboxedWorkflowRunner(),
            workflow_task_poller_behavior=WORKFLOW_TASK_POLLERS,
            nonsticky_to_sticky_poll_ratio=NONSTICKY_TO_STICKY,
        )
    )
    return process

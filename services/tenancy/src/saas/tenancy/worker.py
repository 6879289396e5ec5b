"""Wires the tenancy worker process: it runs tenancy's workflows and their activities."""

from __future__ import annotations

from temporalio.worker import UnsandboxedWorkflowRunner

from saas.common.migrations import find_alembic_ini
from saas.common.process import ServerOptions, ServiceProcess
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


def build(settings: WorkerSettings | None = None) -> ServiceProcess:
    settings = settings or WorkerSettings.load()
    process = ServiceProcess(WORKER, __version__, settings)
    process.server = ServerOptions(loop="uvloop")  # see pyproject.toml
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
        )
    )
    return process

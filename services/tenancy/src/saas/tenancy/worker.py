"""The tenancy worker process: runs tenancy's Temporal workflows and activities."""

from __future__ import annotations

from saas.common.process import ServiceProcess
from saas.common.temporal import TemporalWorker
from saas.tenancy import __version__
from saas.tenancy.cli import WORKER
from saas.tenancy.main import TenancySettings
from saas.tenancy.workflows.provisioning import TenantProvisioningWorkflow, migrate_tenant_schema


class WorkerSettings(TenancySettings):
    """The worker reads what tenancy reads."""


def build(settings: WorkerSettings | None = None) -> ServiceProcess:
    settings = settings or WorkerSettings.load()
    process = ServiceProcess(WORKER, __version__, settings)
    process.add(
        TemporalWorker(
            process.temporal,
            task_queue=settings.temporal_task_queue,
            workflows=[TenantProvisioningWorkflow],
            activities=[migrate_tenant_schema],
            graceful_timeout=settings.shutdown_timeout,
        )
    )
    return process

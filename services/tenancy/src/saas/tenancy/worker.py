"""The tenancy worker process: runs tenancy's Temporal workflows and activities."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.worker import Worker

from saas.common.bus import Responder
from saas.common.process import DATABASE, NATS, TEMPORAL, ServiceProcess
from saas.tenancy import __version__
from saas.tenancy.main import TenancySettings
from saas.tenancy.workflows.provisioning import TenantProvisioningWorkflow, migrate_tenant_schema

PROCESS = "tenancy-worker"


class WorkerSettings(TenancySettings):
    service_name: str = PROCESS
    ops_port: int = 8004


def build(settings: WorkerSettings | None = None) -> ServiceProcess:
    settings = settings or WorkerSettings.load()
    process = ServiceProcess(
        PROCESS,
        __version__,
        settings,
        needs=(DATABASE, NATS, TEMPORAL),
        responder=Responder(PROCESS),
    )
    state: dict[str, object] = {}

    @process.on_startup
    async def start_worker(p: ServiceProcess) -> None:
        worker = Worker(
            p.temporal,
            task_queue=settings.temporal_task_queue,
            workflows=[TenantProvisioningWorkflow],
            activities=[migrate_tenant_schema],
            graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_timeout),
        )
        state["worker"] = worker
        state["task"] = asyncio.create_task(worker.run(), name="temporal-worker")

    @process.on_drain
    async def stop_worker(_: ServiceProcess) -> None:
        worker = state.get("worker")
        if isinstance(worker, Worker):
            await worker.shutdown()  # waits for running activities up to the graceful timeout

    return process

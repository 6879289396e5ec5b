"""TenantProvisioningWorkflow: bring a tenant's schema to the latest tenant migration.

Activity inputs are dataclasses so fields can be added without breaking running workflows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from saas.common.tenant_names import schema_for


@dataclass
class ProvisionTenantInput:
    tenant_id: str
    slug: str


@activity.defn
async def migrate_tenant_schema(data: ProvisionTenantInput) -> str:
    """Create the tenant schema if needed and apply every tenant migration (idempotent)."""
    from saas.common.migrations import find_alembic_ini, upgrade_tenant

    schema = schema_for(data.slug)
    await asyncio.to_thread(upgrade_tenant, find_alembic_ini(), schema)
    return schema


@workflow.defn
class TenantProvisioningWorkflow:
    @workflow.run
    async def run(self, data: ProvisionTenantInput) -> str:
        return await workflow.execute_activity(
            migrate_tenant_schema,
            data,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1)),
        )

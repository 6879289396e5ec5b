"""The tenancy worker's provisioning workflow against the real Temporal dev server and PostgreSQL."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from temporalio.client import Client
from temporalio.worker import Worker

from saas.common.db import Database
from saas.common.settings import DatabaseSettings
from saas.common.tenant_names import schema_for
from saas.tenancy.workflows.provisioning import (
    ProvisionTenantInput,
    TenantProvisioningWorkflow,
    migrate_tenant_schema,
)


async def test_provisioning_creates_and_migrates_the_tenant_schema(stack):
    client = await Client.connect(stack.temporal_host)
    queue = f"test-{uuid.uuid4().hex[:8]}"  # a task queue of this test's own
    slug = f"prov-{uuid.uuid4().hex[:6]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[TenantProvisioningWorkflow],
        activities=[migrate_tenant_schema],
    ):
        schema = await client.execute_workflow(
            TenantProvisioningWorkflow.run,
            ProvisionTenantInput(tenant_id=str(uuid.uuid4()), slug=slug),
            id=f"provision-{slug}",
            task_queue=queue,
        )
        # Running it again is harmless: the migration is idempotent.
        again = await client.execute_workflow(
            TenantProvisioningWorkflow.run,
            ProvisionTenantInput(tenant_id=str(uuid.uuid4()), slug=slug),
            id=f"provision-{slug}-again",
            task_queue=queue,
        )
    assert schema == again == schema_for(slug)
    db = Database.from_settings(DatabaseSettings.load())
    try:
        async with db.get_tenant_session(slug) as session:
            assert (await session.execute(text("SELECT count(*) FROM projects"))).scalar_one() == 0
            version = (
                await session.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one()
        assert version == "0001"
    finally:
        await db.dispose()

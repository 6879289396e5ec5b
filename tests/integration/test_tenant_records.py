"""`public.tenants` as the tenancy login writes it: a status moves only along the lifecycle's
table (an illegal move is an error and leaves the row as it was, two racing moves have one
winner), and a slug is unique whatever its case, even for a writer that skips the service."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from saas.common.contracts.tenancy import TenantStatus
from saas.common.db import Database
from saas.common.db_roles import TENANCY
from saas.common.errors import ErrorCode, ServiceError
from saas.common.settings import DatabaseSettings
from saas.tenancy.store import records
from saas.tenancy.store.tables import tenants


@pytest.fixture
async def tenancy_db(stack) -> AsyncIterator[Database]:
    db = Database.from_settings(
        DatabaseSettings.load(database_url=stack.database_url(TENANCY.name))
    )
    yield db
    await db.dispose()


async def new_tenant(db: Database, status: TenantStatus, slug: str | None = None) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    async with db.session() as session:
        await session.execute(
            sa.insert(tenants).values(
                id=tenant_id,
                slug=slug or f"rec-{tenant_id.hex[:10]}",
                name="Records",
                status=status.value,
            )
        )
    return tenant_id


async def status_of(db: Database, tenant_id: uuid.UUID) -> str:
    async with db.session() as session:
        return (await records.by_id(session, tenant_id)).status


async def test_an_illegal_move_is_an_error_and_changes_nothing(tenancy_db):
    tenant_id = await new_tenant(tenancy_db, TenantStatus.DELETED)
    with pytest.raises(ServiceError) as refused:
        async with tenancy_db.session() as session:
            await records.move(session, tenant_id, TenantStatus.READY)
    assert refused.value.code is ErrorCode.CONFLICT
    assert "deleted cannot become ready" in refused.value.message
    assert await status_of(tenancy_db, tenant_id) == "deleted"


async def test_a_move_to_where_it_already_is_changes_nothing(tenancy_db):
    tenant_id = await new_tenant(tenancy_db, TenantStatus.READY)
    async with tenancy_db.session() as session:
        assert await records.move(session, tenant_id, TenantStatus.READY) is None


async def test_of_two_racing_moves_one_wins_the_other_is_told(tenancy_db):
    tenant_id = await new_tenant(tenancy_db, TenantStatus.PROVISIONING)

    async def move(to: TenantStatus) -> str:
        try:
            async with tenancy_db.session() as session:
                await records.move(session, tenant_id, to)
            return "moved"
        except ServiceError as exc:
            return exc.code.value

    outcomes = await asyncio.gather(move(TenantStatus.READY), move(TenantStatus.FAILED))
    assert sorted(outcomes) == ["conflict", "moved"]
    winner = "ready" if outcomes[0] == "moved" else "failed"
    assert await status_of(tenancy_db, tenant_id) == winner


async def test_a_slug_is_unique_whatever_its_case_even_written_directly(tenancy_db):
    slug = f"case-{uuid.uuid4().hex[:8]}"
    await new_tenant(tenancy_db, TenantStatus.READY, slug)
    with pytest.raises(IntegrityError, match="ck_tenants_slug_lowercase"):
        await new_tenant(tenancy_db, TenantStatus.READY, slug.upper())
    with pytest.raises(IntegrityError, match="uq_tenants_slug"):
        await new_tenant(tenancy_db, TenantStatus.READY, slug)

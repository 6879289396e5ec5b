"""Tenancy's release step (`saas migrate` runs it, after the owners' migrations): the tenant
template at the head of the tenant migrations, readable by the tenancy login.

The migration login owns the template, as it owns every schema a release changes; the tenancy
login, which owns the tenant schemas, may only read it (to clone it). Run `saas tenants
migrate-all` after it: tenants are migrated by the login that owns them.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from saas.common.db_roles import TENANCY
from saas.common.migrations import find_alembic_ini, migration_engine, upgrade_tenant
from saas.common.tenant_names import quote_schema
from saas.tenancy.schemas import TEMPLATE


def keep_template_at_head(database_url: str | None = None) -> None:
    """The `saas.release_steps` entry point: migrate the template (creating it the first time),
    then let the tenancy login read it."""
    upgrade_tenant(find_alembic_ini(), TEMPLATE, database_url=database_url)
    asyncio.run(_let_tenancy_read(database_url))


async def _let_tenancy_read(database_url: str | None) -> None:
    template = quote_schema(TEMPLATE)
    engine = migration_engine(database_url)
    try:
        async with engine.begin() as connection:
            for statement in (
                f"GRANT USAGE ON SCHEMA {template} TO {TENANCY.name}",
                f"GRANT SELECT ON ALL TABLES IN SCHEMA {template} TO {TENANCY.name}",
                f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA {template} TO {TENANCY.name}",
            ):
                await connection.execute(text(statement))
    finally:
        await engine.dispose()

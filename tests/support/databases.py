"""A database of a test's own, in the session's PostgreSQL, set up as production's: the same
logins with their rights, the owners' migrations and the tenant template. For tests that change
what "head" is (a throwaway tenant migration), which must not touch the session's database."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from saas.common.db_roles import MIGRATE, TENANCY, bootstrap_roles
from saas.common.migrations import upgrade_owners

ROOT = Path(__file__).resolve().parents[2]

THROWAWAY = '''"""A throwaway tenant migration, for tests only.

Revision ID: {revision}
Revises: {down}
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("{column}", sa.DateTime(timezone=True)))
    op.create_index("ix_projects_{column}", "projects", ["{column}"])


def downgrade() -> None:
    op.drop_index("ix_projects_{column}", "projects")
    op.drop_column("projects", "{column}")
'''


def migrations_with_a_new_tenant_revision(
    folder: Path, revision: str = "9001", column: str = "archived_at"
) -> Path:
    """A copy of migrations/ whose tenant tree has one more revision after its head."""
    from saas.common.migrations import tenant_revisions

    copy = folder / f"migrations-{revision}"
    shutil.copytree(ROOT / "migrations", copy, ignore=shutil.ignore_patterns("__pycache__"))
    down = tenant_revisions(ROOT / "migrations" / "alembic.ini")[-1]
    text = THROWAWAY.format(revision=revision, down=down, column=column)
    (copy / "tenant" / "versions" / f"{revision}_throwaway.py").write_text(text)
    return copy


@dataclass
class PrivateDatabase:
    admin_url: str
    name: str
    urls: dict[str, str]  # login -> its URL to this database

    @property
    def tenancy_url(self) -> str:
        return self.urls[TENANCY.name]

    @property
    def migrate_url(self) -> str:
        return self.urls[MIGRATE.name]


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _on(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


async def create_private_database(stack, ini: Path) -> PrivateDatabase:
    name = f"saas_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(_plain(stack.database_admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    database = PrivateDatabase(
        _on(stack.database_admin_url, name),
        name,
        {login: _on(url, name) for login, url in stack.database_urls.items()},
    )
    await bootstrap_roles(database.admin_url, {})  # the logins exist: their rights on this one
    await asyncio.to_thread(upgrade_owners, ini, database_url=database.migrate_url)
    return database


async def drop_private_database(stack, database: PrivateDatabase) -> None:
    admin = await asyncpg.connect(_plain(stack.database_admin_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
    finally:
        await admin.close()

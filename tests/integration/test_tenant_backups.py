"""`saas tenants backup` and `saas tenants restore`, run as an operator runs them (the command, the
tenancy login, the server's own client tools): back up, change data, restore, the data is back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from saas.common.db import Database
from saas.common.db_roles import TENANCY
from saas.common.migrations import find_alembic_ini, tenant_revisions, upgrade_tenant
from saas.common.settings import DatabaseSettings
from saas.common.tenant_names import schema_for
from saas.tenancy import schemas


def saas(
    stack, tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "saas.common.cli", *args],
        env={
            **os.environ,
            "DATABASE_URL": stack.database_url(TENANCY.name),
            "BACKUP_DIR": str(tmp_path / "backups"),
        },
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run(stack, *statements: str, **params) -> list[tuple]:
    """Statements as the tenancy login, in one transaction; the last one's rows."""

    async def go() -> list[tuple]:
        db = Database.from_settings(
            DatabaseSettings.load(database_url=stack.database_url(TENANCY.name))
        )
        try:
            async with db.session() as session:
                result = None
                for statement in statements:
                    result = await session.execute(text(statement), params)
                return (
                    [tuple(r) for r in result] if result is not None and result.returns_rows else []
                )
        finally:
            await db.dispose()

    return asyncio.run(go())


def ready_tenant(stack, revision: str | None = None) -> str:
    """A ready tenant with two projects: cloned, or migrated up to `revision`."""
    slug = f"saved-{uuid.uuid4().hex[:8]}"
    schema = schema_for(slug)
    if revision is None:

        async def clone() -> None:
            db = Database.from_settings(
                DatabaseSettings.load(database_url=stack.database_url(TENANCY.name))
            )
            try:
                async with db.session() as session:
                    await schemas.Cloner().clone(session, schema)
            finally:
                await db.dispose()

        asyncio.run(clone())
    else:
        upgrade_tenant(
            find_alembic_ini(), schema, revision, database_url=stack.database_url(TENANCY.name)
        )
    run(
        stack,
        "INSERT INTO public.tenants (id, slug, name, status) VALUES (:id, :slug, 'Saved', 'ready')",
        f'INSERT INTO "{schema}".projects (id, name, created_by) VALUES '
        "(gen_random_uuid(), 'first', gen_random_uuid()), (gen_random_uuid(), 'second', gen_random_uuid())",
        id=uuid.uuid4(),
        slug=slug,
    )
    return slug


def names(stack, slug: str) -> list[str]:
    return [
        r[0] for r in run(stack, f'SELECT name FROM "{schema_for(slug)}".projects ORDER BY name')
    ]


def test_back_up_change_data_restore_and_the_data_is_back(stack, tmp_path):
    slug = ready_tenant(stack)
    backed = saas(stack, tmp_path, "tenants", "backup", slug)
    assert backed.returncode == 0, backed.stderr
    location = Path(backed.stdout.split(" to ", 1)[1].rsplit(" (", 1)[0])
    assert location.parent == tmp_path / "backups" and location.stat().st_size > 0
    recorded = run(
        stack,
        "SELECT b.reason, b.location FROM public.tenant_backups b JOIN public.tenants t "
        "ON t.id = b.tenant_id WHERE t.slug = :slug",
        slug=slug,
    )
    assert recorded == [("operator", str(location.resolve()))]

    schema = schema_for(slug)
    run(
        stack,
        f"DELETE FROM \"{schema}\".projects WHERE name = 'first'",
        f"UPDATE \"{schema}\".projects SET name = 'renamed' WHERE name = 'second'",
        f'INSERT INTO "{schema}".projects (id, name, created_by) '
        "VALUES (gen_random_uuid(), 'added later', gen_random_uuid())",
    )
    assert names(stack, slug) == ["added later", "renamed"]

    restored = saas(stack, tmp_path, "tenants", "restore", slug, str(location), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert names(stack, slug) == ["first", "second"]
    head = tenant_revisions(find_alembic_ini())[-1]
    assert f"it is at {head}" in restored.stdout


def test_restore_asks_first_and_does_nothing_when_told_no(stack, tmp_path):
    slug = ready_tenant(stack)
    backed = saas(stack, tmp_path, "tenants", "backup", slug, "--output", str(tmp_path / "b.dump"))
    assert backed.returncode == 0, backed.stderr
    run(stack, f'DELETE FROM "{schema_for(slug)}".projects')
    declined = saas(
        stack, tmp_path, "tenants", "restore", slug, str(tmp_path / "b.dump"), stdin="n\n"
    )
    assert declined.returncode != 0 and "Aborted" in declined.stderr
    assert names(stack, slug) == []


def test_a_backup_of_one_tenant_is_never_restored_into_another(stack, tmp_path):
    theirs, mine = ready_tenant(stack), ready_tenant(stack)
    file = tmp_path / "theirs.dump"
    assert saas(stack, tmp_path, "tenants", "backup", theirs, "--output", str(file)).returncode == 0
    run(stack, f"UPDATE \"{schema_for(mine)}\".projects SET name = name || ' (mine)'")

    refused = saas(stack, tmp_path, "tenants", "restore", mine, str(file), "--yes")
    assert refused.returncode != 0
    assert f"is a backup of {schema_for(theirs)}, not of {schema_for(mine)}" in refused.stderr
    assert names(stack, mine) == ["first (mine)", "second (mine)"]


def test_an_older_backup_is_brought_to_the_head_after_its_restore(stack, tmp_path):
    revisions = tenant_revisions(find_alembic_ini())
    if len(revisions) < 2:
        pytest.skip("the tenant migrations have one revision: no older backup to make")
    slug = ready_tenant(stack, revision=revisions[0])
    file = tmp_path / "old.dump"
    assert saas(stack, tmp_path, "tenants", "backup", slug, "--output", str(file)).returncode == 0
    upgrade_tenant(
        find_alembic_ini(), schema_for(slug), database_url=stack.database_url(TENANCY.name)
    )

    restored = saas(stack, tmp_path, "tenants", "restore", slug, str(file), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert f"the backup is at {revisions[0]}" in restored.stderr
    assert run(stack, f'SELECT version_num FROM "{schema_for(slug)}".alembic_version') == [
        (revisions[-1],)
    ]
    assert names(stack, slug) == ["first", "second"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["backup", "no-such-tenant"], "no tenant 'no-such-tenant'"),
        (["backup", "acme; DROP SCHEMA public"], "Invalid value for SLUG: slug may contain only"),
        (["backup", "template"], "reserved"),
    ],
)
def test_backup_refuses_what_is_not_a_tenant(stack, tmp_path, args, says):
    refused = saas(stack, tmp_path, "tenants", *args)
    assert refused.returncode != 0 and says in refused.stderr, refused.stderr

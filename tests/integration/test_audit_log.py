"""The audit log in the real database: chained appends, append-only enforcement, verify, queries."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from saas.audit import store
from saas.audit.handlers import require_reader
from saas.audit.main import AuditSettings
from saas.common.bus import RequestContext
from saas.common.contracts.audit import AuditQuery
from saas.common.contracts.identity import Role
from saas.common.db import Database
from saas.common.db_roles import AUDIT, MIGRATE
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events import Actor, new_event
from saas.common.events.catalogue import MembershipAdded
from saas.common.memberships import Memberships
from saas.common.settings import DatabaseSettings
from saas.common.tokens import TokenVerifier
from tests.support.audit import append, events_for
from tests.support.tokens import POLICY, Keys


@pytest.fixture
def admin_db(db):
    """Connected as the superuser: what only a database administrator can do."""
    return db


@pytest.fixture
async def owner_db(stack):
    """Connected as the migration login, which owns the audit schema and its tables."""
    db = Database.from_settings(
        DatabaseSettings.load(database_url=stack.database_url(MIGRATE.name))
    )
    yield db
    await db.dispose()


@pytest.fixture
async def writer_db(stack):
    """Connected as the audit service is: its own login, acting as role audit_writer."""
    settings = AuditSettings.load(database_url=stack.database_url(AUDIT.name))
    db = Database.from_settings(settings)
    yield db
    await db.dispose()


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


async def verify(db: Database, tenant: str, checkpoints=()):
    async with db.session() as session:
        return await store.verify(session, tenant, checkpoints=checkpoints)


async def test_appended_chain_verifies(writer_db, tenant):
    await append(writer_db, events_for(tenant, 5))
    await append(writer_db, events_for(tenant, 5, start=5))
    result = await verify(writer_db, tenant)
    assert result.ok and result.checked == 10 and result.first_broken is None


async def test_concurrent_appends_for_one_tenant_never_fork(writer_db, tenant):
    batches = [events_for(tenant, 10, start=i * 10) for i in range(8)]
    await asyncio.gather(*(append(writer_db, b) for b in batches))
    async with writer_db.session() as session:
        seqs = [
            r[0]
            for r in await session.execute(
                text(
                    "SELECT tenant_seq FROM audit.events WHERE tenant_key = :t ORDER BY tenant_seq"
                ),
                {"t": tenant},
            )
        ]
    assert seqs == list(range(1, 81))
    assert (await verify(writer_db, tenant)).ok


async def test_an_event_logged_before_is_not_logged_again(writer_db, tenant):
    first = events_for(tenant, 5)
    async with writer_db.session() as session:
        assert await store.append(session, first) == first
    again = [first[1], *events_for(tenant, 2, start=5), first[1], first[4]]
    async with writer_db.session() as session:
        assert [e.id for e in await store.append(session, again)] == [e.id for e in again[1:3]]
    result = await verify(writer_db, tenant)
    assert result.ok and result.checked == 7


async def test_concurrent_appends_of_the_same_events_log_each_once(writer_db, tenant):
    batch = events_for(tenant, 20)
    await asyncio.gather(*(append(writer_db, batch) for _ in range(4)))  # redeliveries, replicas
    result = await verify(writer_db, tenant)
    assert result.ok and result.checked == 20


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.events SET actor_id = 'someone-else' WHERE tenant_key = :t",
        "DELETE FROM audit.events WHERE tenant_key = :t",
        "TRUNCATE audit.events",
    ],
)
async def test_the_service_role_cannot_change_the_log(writer_db, tenant, statement):
    await append(writer_db, events_for(tenant, 2))
    with pytest.raises(DBAPIError, match="permission denied"):
        async with writer_db.session() as session:
            await session.execute(text(statement), {"t": tenant})


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.events SET actor_id = 'someone-else' WHERE tenant_key = :t",
        "DELETE FROM audit.events WHERE tenant_key = :t",
        "TRUNCATE audit.events",
    ],
)
async def test_the_trigger_refuses_changes_by_anyone_else(owner_db, writer_db, tenant, statement):
    await append(writer_db, events_for(tenant, 2))
    with pytest.raises(DBAPIError, match="append-only"):
        async with owner_db.session() as session:
            await session.execute(text(statement), {"t": tenant})


async def _tamper(admin_db: Database, statement: str, tenant: str) -> None:
    """What only a superuser can do: switch triggers off for the session and edit the log."""
    async with admin_db.session() as session:
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        await session.execute(text(statement), {"t": tenant})


async def test_verify_names_the_first_row_a_superuser_altered(admin_db, writer_db, tenant):
    await append(writer_db, events_for(tenant, 10))
    await _tamper(
        admin_db,
        "UPDATE audit.events SET payload = jsonb_set(payload, '{name}', '\"renamed\"') "
        "WHERE tenant_key = :t AND tenant_seq IN (4, 7)",
        tenant,
    )
    result = await verify(writer_db, tenant)
    assert not result.ok
    assert result.first_broken.tenant_seq == 4
    assert "contents" in result.first_broken.reason
    assert result.checked == 3


async def test_verify_notices_a_deleted_row(admin_db, writer_db, tenant):
    await append(writer_db, events_for(tenant, 6))
    await _tamper(
        admin_db, "DELETE FROM audit.events WHERE tenant_key = :t AND tenant_seq = 3", tenant
    )
    result = await verify(writer_db, tenant)
    assert not result.ok and result.first_broken.tenant_seq == 3
    assert "gap" in result.first_broken.reason


async def test_verify_notices_a_rewritten_chain_tail(admin_db, writer_db, tenant):
    await append(writer_db, events_for(tenant, 4))
    await _tamper(
        admin_db,
        "UPDATE audit.events SET prev_hash = repeat('a', 64) WHERE tenant_key = :t AND tenant_seq = 2",
        tenant,
    )
    result = await verify(writer_db, tenant)
    assert result.first_broken.tenant_seq == 2 and "prev_hash" in result.first_broken.reason


async def test_query_filters_and_pages_newest_first(writer_db, tenant):
    batch = events_for(tenant, 12, actor="alice") + events_for(tenant, 3, actor="bob", start=12)
    batch.append(
        new_event(
            MembershipAdded(tenant_id=tenant, user_id="u-9", role="member"),
            source="saas/identity",
            actor=Actor.user("alice"),
            tenant_id=tenant,
        )
    )
    await append(writer_db, batch)
    async with writer_db.session() as session:
        first = await store.query(session, AuditQuery(tenant_id=tenant, actor_id="alice", limit=5))
        assert [e.tenant_seq for e in first.items] == [16, 12, 11, 10, 9]
        second = await store.query(
            session,
            AuditQuery(tenant_id=tenant, actor_id="alice", limit=5, cursor=first.next_cursor),
        )
        assert [e.tenant_seq for e in second.items] == [8, 7, 6, 5, 4]
        typed = await store.query(session, AuditQuery(tenant_id=tenant, types=["membership.added"]))
        assert [e.type for e in typed.items] == ["membership.added"] and typed.next_cursor is None
        future = await store.query(
            session, AuditQuery(tenant_id=tenant, since=datetime.now(UTC) + timedelta(hours=1))
        )
        assert future.items == []
        other = await store.query(session, AuditQuery(tenant_id="someone-else"))
        assert other.items == []
        with pytest.raises(ServiceError) as caught:
            await store.query(session, AuditQuery(tenant_id=tenant, cursor="garbage!!"))
        assert caught.value.code is ErrorCode.BAD_REQUEST


def test_page_size_is_capped():
    with pytest.raises(ValueError):
        AuditQuery(tenant_id="t", limit=201)


class KnownRoles(Memberships):
    """Roles as identity would answer them (the real lookup is exercised end to end)."""

    def __init__(self, roles: dict[tuple[str, str], Role]) -> None:
        self.roles = roles

    async def role(self, tenant_id: str, user_id: str) -> Role | None:
        return self.roles.get((tenant_id, user_id))


@pytest.mark.parametrize(
    ("who", "tenant", "code"),
    [
        (None, "t-1", ErrorCode.UNAUTHORIZED),
        ("stranger", "t-1", ErrorCode.NOT_FOUND),
        ("member", "t-1", ErrorCode.FORBIDDEN),
        ("owner-elsewhere", "t-1", ErrorCode.NOT_FOUND),
        ("admin", "", ErrorCode.FORBIDDEN),  # events of no tenant: platform admins only
        (None, "", ErrorCode.UNAUTHORIZED),
    ],
)
async def test_only_owners_and_admins_of_the_tenant_read_its_log(who, tenant, code):
    keys = Keys()
    kid = keys.add()
    roles = KnownRoles(
        {
            ("t-1", "member"): Role.MEMBER,
            ("t-1", "admin"): Role.ADMIN,
            ("t-2", "owner-elsewhere"): Role.OWNER,
        }
    )
    verifier = TokenVerifier(keys.jwks, POLICY)

    def ctx(user: str | None, **claims) -> RequestContext:
        token = keys.sign(kid, sub=user, **claims) if user else None
        return RequestContext("r", "svc.audit.query", token=token, verifier=verifier)

    with pytest.raises(ServiceError) as caught:
        await require_reader(roles, ctx(who), tenant)
    assert caught.value.code is code
    await require_reader(roles, ctx("admin"), "t-1")
    await require_reader(roles, ctx("operator", adm=True), "")


async def test_failed_appends_are_counted_in_audit_log_failures(admin_db, tenant):
    from saas.audit.handlers import make_event_handler
    from saas.common.metrics import Metrics

    async with admin_db.session() as session:
        await session.execute(
            text(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_reader_only') THEN "
                "CREATE ROLE audit_reader_only NOLOGIN; END IF; END $$"
            )
        )
        await session.execute(text("GRANT USAGE ON SCHEMA audit TO audit_reader_only"))
        await session.execute(text("GRANT SELECT ON audit.events TO audit_reader_only"))
    reader = Database.from_settings(DatabaseSettings.load(database_role="audit_reader_only"))
    metrics = Metrics()
    handler = make_event_handler(metrics, on_committed=lambda chains: None)
    try:
        with pytest.raises(Exception, match="permission denied"):  # COPY raises asyncpg's own error
            async with reader.session() as session:
                await handler(session, events_for(tenant, 3))
    finally:
        await reader.dispose()
    assert "saas_audit_log_failures_total 1.0" in metrics.render()[0].decode()


def _verify_cli(database_url: str, *args: str):
    """`saas audit verify` as an operator runs it: with the audit service's login."""
    return subprocess.run(
        [sys.executable, "-m", "saas.common.cli", "audit", "verify", *args],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_operators_verify_chains_from_the_command_line(stack, admin_db, writer_db, tenant):
    other = tenant + "-b"
    login = stack.database_url(AUDIT.name)
    await append(writer_db, events_for(tenant, 4))
    await append(writer_db, events_for(other, 3))
    ok = await asyncio.to_thread(_verify_cli, login, tenant, other)
    assert ok.returncode == 0, ok.stderr
    assert (
        f"{tenant}: intact, 4 entries" in ok.stdout and f"{other}: intact, 3 entries" in ok.stdout
    )

    await _tamper(
        admin_db,
        "UPDATE audit.events SET actor_id = 'mallory' WHERE tenant_key = :t AND tenant_seq = 2",
        other,
    )
    broken = await asyncio.to_thread(_verify_cli, login, tenant, other)
    assert broken.returncode == 1
    assert f"{other}: BROKEN at entry 2" in broken.stdout and f"{tenant}: intact" in broken.stdout

    every = await asyncio.to_thread(_verify_cli, login, "--all")
    assert every.returncode == 1 and f"{other}: BROKEN at entry 2" in every.stdout
    assert (
        await asyncio.to_thread(_verify_cli, login)
    ).returncode == 2  # neither tenants nor --all


async def _owner_of_the_log(owner_db: Database) -> str:
    async with owner_db.session() as session:
        query = (
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'audit' AND tablename = 'events'"
        )
        return (await session.execute(text(query))).scalar_one()


DELETE_HISTORY = "DELETE FROM audit.events WHERE tenant_key = :t"
# What a compromised audit process could try, each as a sequence of statements in one transaction.
ATTACKS = {
    "update": ["UPDATE audit.events SET actor_id = 'mallory' WHERE tenant_key = :t"],
    "delete": [DELETE_HISTORY],
    "truncate": ["TRUNCATE audit.events"],
    "reset role": ["RESET ROLE", "ALTER TABLE audit.events DISABLE TRIGGER USER", DELETE_HISTORY],
    "set role to the owner": [
        "SET ROLE {owner}",
        "ALTER TABLE audit.events DISABLE TRIGGER USER",
        DELETE_HISTORY,
    ],
    "disable the triggers": ["ALTER TABLE audit.events DISABLE TRIGGER USER"],
    "replication role": ["SET LOCAL session_replication_role = replica", DELETE_HISTORY],
    "drop the table": ["DROP TABLE audit.events"],
    "drop the trigger": ["DROP TRIGGER events_refuse_update_delete ON audit.events"],
    "drop the schema": ["DROP SCHEMA audit CASCADE"],
}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
async def test_audit_login_cannot_reset_role_and_delete_history(
    owner_db, writer_db, tenant, attack
):
    """Connected as the audit service connects, nothing but reading and appending is possible."""
    await append(writer_db, events_for(tenant, 3))
    owner = await _owner_of_the_log(owner_db)
    with pytest.raises(DBAPIError, match="permission denied|must be owner|append-only"):
        async with writer_db.session() as session:
            for statement in ATTACKS[attack]:
                await session.execute(text(statement.format(owner=owner)), {"t": tenant})
    result = await verify(writer_db, tenant)
    assert result.ok and result.checked == 3


def _forged_row(tenant: str, **changes) -> dict:
    """A row as a superuser might slip in: a well-formed first entry, then `changes`."""
    row = {
        "event_id": uuid.uuid4(),
        "tenant_key": tenant,
        "tenant_seq": 1,
        "prev_hash": "0" * 64,
        "hash": "ab" * 32,
        "entry": b"{}",
    }
    return row | changes


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"tenant_seq": 0}, "ck_audit_events_tenant_seq"),
        ({"tenant_seq": -3}, "ck_audit_events_tenant_seq"),
        ({"hash": "AB" * 32}, "ck_audit_events_hash_hex"),
        ({"hash": "abc"}, "ck_audit_events_hash_hex"),
        ({"hash": "ab" * 31 + "a"}, "ck_audit_events_hash_hex"),  # 63 digits
        ({"hash": "ab" * 15 + " " + "ab" * 16 + "a"}, "ck_audit_events_hash_hex"),
        ({"hash": "0x" + "ab" * 31}, "ck_audit_events_hash_hex"),
        ({"prev_hash": "0" * 63 + "G", "tenant_seq": 2}, "ck_audit_events_prev_hash_hex"),
        ({"prev_hash": "zz" * 32, "tenant_seq": 2}, "ck_audit_events_prev_hash_hex"),
        ({"prev_hash": "ab" * 32}, "ck_audit_events_first_entry_follows_genesis"),
    ],
)
async def test_the_table_refuses_malformed_entries(admin_db, tenant, changes, constraint):
    row = _forged_row(tenant, **changes)
    with pytest.raises(DBAPIError, match=constraint):
        async with admin_db.session() as session:
            await session.execute(
                text(
                    "INSERT INTO audit.events (event_id, tenant_key, tenant_seq, type, source, "
                    "actor_type, actor_id, occurred_at, data_version, payload, prev_hash, hash, "
                    "entry) VALUES (:event_id, :tenant_key, :tenant_seq, 'x.y', 's', 'user', 'u', "
                    "now(), 1, '{}', :prev_hash, :hash, :entry)"
                ),
                row,
            )


async def test_each_hash_is_over_the_stored_bytes(admin_db, writer_db, tenant):
    await append(writer_db, events_for(tenant, 5))
    async with admin_db.session() as session:
        mismatches = (
            await session.execute(
                text(
                    "SELECT count(*) FROM audit.events WHERE tenant_key = :t AND "
                    "hash <> encode(sha256(convert_to(prev_hash, 'UTF8') || entry), 'hex')"
                ),
                {"t": tenant},
            )
        ).scalar_one()
    assert mismatches == 0


@pytest.mark.parametrize(
    ("column_change", "field"),
    [
        ("actor_id = 'mallory'", "actor_id"),
        ("type = 'user.logged_in'", "type"),
        ("occurred_at = occurred_at - interval '1 day'", "occurred_at"),
        ('payload = payload || \'{"name": "renamed"}\'', "payload"),
    ],
)
async def test_verify_names_columns_that_no_longer_say_what_the_stored_bytes_say(
    admin_db, writer_db, tenant, column_change, field
):
    await append(writer_db, events_for(tenant, 6))
    await _tamper(
        admin_db,
        f"UPDATE audit.events SET {column_change} WHERE tenant_key = :t AND tenant_seq = 5",
        tenant,
    )
    result = await verify(writer_db, tenant)
    assert not result.ok and result.first_broken.tenant_seq == 5 and result.checked == 4
    assert field in result.first_broken.reason and "stored" in result.first_broken.reason


async def test_verify_notices_rewritten_stored_bytes(admin_db, writer_db, tenant):
    await append(writer_db, events_for(tenant, 4))
    await _tamper(
        admin_db,
        "UPDATE audit.events SET entry = convert_to(replace(convert_from(entry, 'UTF8'), "
        "'u-1', 'mallory'), 'UTF8') WHERE tenant_key = :t AND tenant_seq = 3",
        tenant,
    )
    result = await verify(writer_db, tenant)
    assert result.first_broken.tenant_seq == 3 and "hash" in result.first_broken.reason


async def test_a_long_chain_is_verified_page_by_page_each_in_its_own_transaction(writer_db, tenant):
    await append(writer_db, events_for(tenant, 25))
    async with writer_db.session() as session:
        first = await store.verify(session, tenant, checkpoints=(), max_entries=10)
    assert first.ok and not first.complete and first.checked >= 10 and first.next_cursor
    whole = await store.verify_in_pages(writer_db, tenant, checkpoints=(), page=10)
    assert whole.ok and whole.complete and whole.checked == 25
    async with writer_db.session() as session:
        with pytest.raises(ServiceError) as caught:
            await store.verify(session, tenant, checkpoints=(), cursor="forged")
    assert caught.value.code is ErrorCode.BAD_REQUEST


async def test_paging_still_finds_a_broken_link_on_a_later_page(writer_db, admin_db, tenant):
    await append(writer_db, events_for(tenant, 25))
    async with admin_db.session() as session:
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        await session.execute(
            text(
                "UPDATE audit.events SET actor_id = 'someone-else' WHERE tenant_key = :t AND tenant_seq = 22"
            ),
            {"t": tenant},
        )
    result = await store.verify_in_pages(writer_db, tenant, checkpoints=(), page=10)
    assert not result.ok and result.complete and result.first_broken.tenant_seq == 22

"""Events through the real processes: identity's outbox -> relay -> JetStream -> the audit service.

The audit process is killed outright (SIGKILL) in the middle of a stream of events and started
again: the log ends up with every event exactly once and an intact chain.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import text

from saas.common.bus import BusClient
from saas.common.bus.requests import parse_reply
from saas.common.cli import discover_processes
from saas.common.contracts.audit import AuditPage, AuditQuery, AuditVerification, AuditVerifyRequest
from saas.common.db import Database
from saas.common.db_roles import AUDIT
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events.outbox import Outbox
from saas.devstack.servers import free_port
from saas.devstack.supervisor import Child, Supervisor
from tests.support.accounts import owner_token
from tests.support.events import connect, member_event, write_events

pytestmark = pytest.mark.e2e
WANTED = {"identity", "audit"}


class Processes:
    def __init__(
        self, env: dict[str, str], database_urls: dict[str, str], nats_urls, log_dir
    ) -> None:
        self.env = env
        self.database_urls = database_urls
        self.nats_urls = nats_urls
        self.log_dir = log_dir
        self.specs = {s.name: s for s in discover_processes() if s.name in WANTED}
        self.ports = {name: free_port() for name in self.specs}
        self.supervisors: list[Supervisor] = []

    def start(self, name: str) -> Child:
        supervisor = Supervisor(
            self.env,
            database_urls=self.database_urls,
            nats_urls=self.nats_urls,
            log_dir=self.log_dir,
        )
        (child,) = supervisor.start([self.specs[name]], {name: self.ports[name]})
        supervisor.wait_ready(60)
        self.supervisors.append(supervisor)
        return child

    def stop_all(self) -> None:
        for supervisor in self.supervisors:
            supervisor.stop()


@pytest.fixture(scope="module")
def processes(stack, tmp_path_factory) -> Iterator[Processes]:
    env = {
        **stack.env(),
        "APP_ENV": "test",
        "LOG_FORMAT": "json",
        "CONSUMER_ACK_WAIT": "2",
        "OUTBOX_POLL_INTERVAL": "0.2",
        "AUDIT_CHECKPOINT_INTERVAL": "0.2",
        "MIGRATIONS_DIR": os.environ["MIGRATIONS_DIR"],
    }
    procs = Processes(env, stack.database_urls, stack.nats_urls, tmp_path_factory.mktemp("logs"))
    procs.children = {name: procs.start(name) for name in ("identity", "audit")}
    yield procs
    procs.stop_all()


async def audit_count(db: Database, tenant_prefix: str) -> int:
    async with db.session() as session:
        return (
            await session.execute(
                text("SELECT count(*) FROM audit.events WHERE tenant_key LIKE :p"),
                {"p": tenant_prefix + "%"},
            )
        ).scalar_one()


async def wait_for_count(db: Database, prefix: str, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (n := await audit_count(db, prefix)) < expected:
        assert time.monotonic() < deadline, f"only {n} of {expected} audit entries after {timeout}s"
        await asyncio.sleep(0.2)


async def test_an_event_written_by_identity_reaches_the_audit_log(processes, db, stack):
    tenant = str(uuid.uuid4())
    bus = await connect(stack.nats_url)
    client = BusClient(bus, timeout=5)
    owner = await owner_token(client, tenant)  # a real account, made owner by identity...
    await wait_for_count(db, tenant, 1)  # ...which identity announced: membership.added
    events = [member_event(tenant, n) for n in range(25)]
    await write_events(db, Outbox("identity"), events)
    await wait_for_count(db, tenant, 26)

    page = await client.request(
        "audit", "query", AuditQuery(tenant_id=tenant, limit=10), AuditPage, token=owner
    )
    assert [e.tenant_seq for e in page.items] == list(range(26, 16, -1))
    assert page.items[0].event_id == events[-1].id
    verdict = await client.request(
        "audit", "verify", AuditVerifyRequest(tenant_id=tenant), AuditVerification, token=owner
    )
    assert verdict.ok and verdict.checked == 26
    owner_elsewhere = await owner_token(client, str(uuid.uuid4()))
    for token, code in ((owner_elsewhere, ErrorCode.NOT_FOUND), (None, ErrorCode.UNAUTHORIZED)):
        with pytest.raises(ServiceError) as caught:
            await client.request(
                "audit", "query", AuditQuery(tenant_id=tenant), AuditPage, token=token
            )
        assert caught.value.code is code
    # A page size past the cap, sent raw as a misbehaving client would.
    raw = await bus.nc.request(
        "svc.audit.query",
        orjson.dumps({"tenant_id": tenant, "limit": 5000}),
        timeout=5,
        headers={"Authorization": f"Bearer {owner}"},
    )
    with pytest.raises(ServiceError) as too_big:
        parse_reply(raw.data, AuditPage)
    assert too_big.value.code is ErrorCode.VALIDATION_ERROR
    await bus.close()


async def test_audit_killed_mid_stream_loses_and_duplicates_nothing(processes, db):
    prefix = f"kill-{uuid.uuid4().hex[:6]}-"
    events = [member_event(f"{prefix}{n % 4}", n) for n in range(3000)]
    writer = asyncio.create_task(write_events(db, Outbox("identity"), events, per_tx=100))
    deadline = time.monotonic() + 60
    while await audit_count(db, prefix) < 300:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    audit = processes.children["audit"]
    audit.process.send_signal(signal.SIGKILL)  # no drain, no goodbye
    audit.process.wait(10)
    await writer
    processes.children["audit"] = processes.start("audit")
    await wait_for_count(db, prefix, 3000, timeout=90)
    await asyncio.sleep(3)  # past ack_wait: any redelivery would have landed by now
    assert await audit_count(db, prefix) == 3000
    async with db.session() as session:
        dupes = (
            await session.execute(
                text(
                    "SELECT count(*) - count(DISTINCT event_id) FROM audit.events WHERE tenant_key LIKE :p"
                ),
                {"p": prefix + "%"},
            )
        ).scalar_one()
        assert dupes == 0
        from saas.audit import checkpoints, store

        bus = await connect(processes.env["NATS_URL"])
        for t in range(4):
            known = await checkpoints.read(bus.js, f"{prefix}{t}")
            assert known, "the audit processes checkpointed nothing"
            assert (await store.verify(session, f"{prefix}{t}", checkpoints=known)).ok
        await bus.close()


async def wait_for_checkpoint(bus, tenant: str, count: int, timeout: float = 10) -> None:
    """Until the audit process has checkpointed `count` entries of the tenant's chain (or the
    timeout passes: verification below then shows what was missed)."""
    from saas.audit import checkpoints

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        known = await checkpoints.read(bus.js, tenant)
        if known and known[-1].count >= count:
            return
        await asyncio.sleep(0.2)


async def as_superuser_without_triggers(db: Database, *statements: tuple[str, dict]) -> None:
    async with db.session() as session:
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        for sql, params in statements:
            await session.execute(text(sql), params)


async def recompute_from(db: Database, tenant: str, seq: int) -> None:
    """Rewrite entry `seq` and recompute every stored byte and hash after it: a chain that is
    consistent in itself, as someone who knows the algorithm would leave it."""
    from saas.audit.chain import canonical, link_hash

    async with db.session() as session:
        rows = (
            (
                await session.execute(
                    text("SELECT * FROM audit.events WHERE tenant_key = :t ORDER BY tenant_seq"),
                    {"t": tenant},
                )
            )
            .mappings()
            .all()
        )
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        prev = rows[seq - 2]["hash"]
        for row in rows[seq - 1 :]:
            changed = dict(row)
            if row["tenant_seq"] == seq:
                changed["payload"] = {**row["payload"], "name": "rewritten"}
            entry = canonical(changed)
            digest = link_hash(prev, entry)
            await session.execute(
                text(
                    "UPDATE audit.events SET payload = :payload, entry = :entry, "
                    "prev_hash = :prev, hash = :hash WHERE id = :id"
                ),
                {
                    "payload": orjson.dumps(changed["payload"]).decode(),
                    "entry": entry,
                    "prev": prev,
                    "hash": digest,
                    "id": row["id"],
                },
            )
            prev = digest


async def test_a_deleted_tail_a_deleted_chain_and_a_recomputed_chain_are_each_detected(
    processes, db, stack
):
    tail, chain, recomputed = (str(uuid.uuid4()) for _ in range(3))
    bus = await connect(stack.nats_url)
    client = BusClient(bus, timeout=10)
    owners = {tenant: await owner_token(client, tenant) for tenant in (tail, chain, recomputed)}
    for tenant in (tail, chain, recomputed):
        await wait_for_count(db, tenant, 1)  # membership.added of the owner: entry 1
        await write_events(db, Outbox("identity"), [member_event(tenant, n) for n in range(10)])
    for tenant in (tail, chain, recomputed):
        await wait_for_count(db, tenant, 11)
        await wait_for_checkpoint(bus, tenant, 11)

    delete = "DELETE FROM audit.events WHERE tenant_key = :t AND tenant_seq > :after"
    await as_superuser_without_triggers(
        db, (delete, {"t": tail, "after": 9}), (delete, {"t": chain, "after": 0})
    )
    await recompute_from(db, recomputed, 5)

    async def verify_over_nats(tenant: str) -> AuditVerification:
        request = AuditVerifyRequest(tenant_id=tenant)
        return await client.request(
            "audit", "verify", request, AuditVerification, token=owners[tenant]
        )

    cut = await verify_over_nats(tail)
    assert not cut.ok and cut.checked == 9
    assert cut.first_broken.tenant_seq == 10 and "missing" in cut.first_broken.reason
    gone = await verify_over_nats(chain)
    assert not gone.ok and gone.checked == 0
    assert gone.first_broken.tenant_seq == 1 and "missing" in gone.first_broken.reason
    rewritten = await verify_over_nats(recomputed)
    assert not rewritten.ok and 5 <= rewritten.first_broken.tenant_seq <= 11
    assert "checkpoint" in rewritten.first_broken.reason
    await bus.close()

    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "saas.common.cli", "audit", "verify", "--all"],
        env={**os.environ, **processes.env, "DATABASE_URL": stack.database_url(AUDIT.name)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 1, cli.stderr
    for tenant in (tail, chain, recomputed):
        assert f"{tenant}: BROKEN" in cli.stdout, cli.stdout

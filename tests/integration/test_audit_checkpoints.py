"""Chain heads checkpointed to JetStream, and verification against them, with the real servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.js.errors import APIError
from sqlalchemy import text

from saas.audit import checkpoints, store
from saas.audit.checkpoints import CheckpointPublisher
from saas.audit.main import AuditSettings
from saas.common.bus import Bus
from saas.common.db import Database
from saas.common.db_roles import AUDIT
from saas.common.events import Actor, new_event
from saas.common.events.catalogue import UserRegistered
from saas.common.events.stream import AUDIT_CHECKPOINTS_STREAM
from saas.common.settings import EventSettings
from tests.support.audit import append, events_for
from tests.support.events import connect


@pytest.fixture
async def writer_db(stack) -> AsyncIterator[Database]:
    db = Database.from_settings(AuditSettings.load(database_url=stack.database_url(AUDIT.name)))
    yield db
    await db.dispose()


@pytest.fixture
async def nats(stack) -> AsyncIterator[Bus]:
    bus = await connect(stack.nats_url)
    yield bus
    await bus.close()


@pytest.fixture
def publisher(writer_db, nats) -> CheckpointPublisher:
    return CheckpointPublisher(writer_db, nats, EventSettings.load(), interval=3600)


@pytest.fixture
def tenant() -> str:
    return f"cp-{uuid.uuid4().hex[:8]}"


async def test_the_heads_of_appended_chains_are_published_once_per_round(
    publisher, writer_db, nats, tenant
):
    await publisher.publish_due()  # the first round: every chain's head
    await append(writer_db, events_for(tenant, 3))
    publisher.mark([tenant])
    await append(writer_db, events_for(tenant, 2, start=3))
    publisher.mark([tenant])
    assert await publisher.publish_due() == 1  # one checkpoint for both batches
    assert await publisher.publish_due() == 0  # nothing appended since
    known = await checkpoints.read(nats.js, tenant)
    async with writer_db.session() as session:
        ((_, head),) = await store.chain_heads(session, [tenant])
    assert known == [head] and head.count == 5


async def test_checkpoints_cannot_be_deleted_or_purged(publisher, writer_db, nats, tenant):
    await append(writer_db, events_for(tenant, 2))
    publisher.mark([tenant])
    await publisher.start()
    await publisher.stop()  # publishes what is still due
    last = await nats.js.get_last_msg(AUDIT_CHECKPOINTS_STREAM, checkpoints.subject_for(tenant))
    with pytest.raises(APIError):
        await nats.js.delete_msg(AUDIT_CHECKPOINTS_STREAM, last.seq)
    with pytest.raises(APIError):
        await nats.js.purge_stream(AUDIT_CHECKPOINTS_STREAM, subject=last.subject)
    assert (await checkpoints.read(nats.js, tenant))[-1].count == 2


async def test_verify_catches_a_cut_tail_a_deleted_chain_and_a_rewrite_only_with_checkpoints(
    publisher, writer_db, db, nats, tenant
):
    cut, gone = tenant + "-cut", tenant + "-gone"
    for chain in (cut, gone):
        await append(writer_db, events_for(chain, 6))
    publisher.mark([cut, gone])
    await publisher.publish_due()
    async with db.session() as session:
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        await session.execute(
            text("DELETE FROM audit.events WHERE tenant_key = :t AND tenant_seq > 4"), {"t": cut}
        )
        await session.execute(text("DELETE FROM audit.events WHERE tenant_key = :t"), {"t": gone})

    async with writer_db.session() as session:
        blind = await store.verify(session, cut, checkpoints=())
        seen = await store.verify(session, cut, checkpoints=await checkpoints.read(nats.js, cut))
        vanished = await store.verify(
            session, gone, checkpoints=await checkpoints.read(nats.js, gone)
        )
    assert blind.ok  # the chain alone cannot tell
    assert not seen.ok and seen.checked == 4 and seen.first_broken.tenant_seq == 5
    assert "5 to 6 are missing" in seen.first_broken.reason
    assert not vanished.ok and "whole chain" in vanished.first_broken.reason


def _verify_cli(stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "saas.common.cli", "audit", "verify", *args],
        env={**os.environ, "DATABASE_URL": stack.database_url(AUDIT.name)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_verify_all_covers_events_without_a_tenant_and_chains_gone_from_the_database(
    stack, publisher, writer_db, db, nats, tenant
):
    no_tenant = new_event(
        UserRegistered(user_id=str(uuid.uuid4()), email=f"{tenant}@example.com"),
        source="saas/identity",
        actor=Actor.system("tests"),
    )
    await append(writer_db, events_for(tenant, 3))
    publisher.mark([tenant])
    await publisher.publish_due()
    # Appended after the round and never marked: only the database knows this chain.
    await append(writer_db, [no_tenant])
    async with db.session() as session:
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        await session.execute(text("DELETE FROM audit.events WHERE tenant_key = :t"), {"t": tenant})

    every = await asyncio.to_thread(_verify_cli, stack, "--all")
    assert '"" (events without a tenant): intact' in every.stdout, every.stdout + every.stderr
    assert f"{tenant}: BROKEN at entry 1: the whole chain is missing" in every.stdout
    assert every.returncode == 1

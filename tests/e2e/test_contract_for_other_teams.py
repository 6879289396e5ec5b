"""What other teams rely on: the AsyncAPI document and the example durable subscriber."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from saas.common.cli import _register_builtins, cli
from saas.common.events import Actor, new_event
from saas.common.events.asyncapi import build_document
from saas.common.events.catalogue import CATALOGUE, MembershipAdded, TenantCreated
from tests.support.events import connect

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIBER = ROOT / "examples" / "tenant_created_subscriber.py"


def test_committed_asyncapi_document_matches_the_code():
    _register_builtins()
    result = CliRunner().invoke(cli, ["events", "asyncapi"])
    assert result.exit_code == 0
    committed = (ROOT / "docs" / "asyncapi.json").read_text()
    assert json.loads(result.output) == json.loads(committed), (
        "run: saas events asyncapi -o docs/asyncapi.json"
    )


def test_asyncapi_describes_every_event_and_real_events_validate_against_it():
    doc = build_document()
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == set(CATALOGUE)
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        node = doc
        for key in ref.removeprefix("#/").split("/"):
            node = node[key]  # every reference resolves
    for payload in (
        TenantCreated(tenant_id="t-1", slug="acme", name="Acme", schema_name="tenant_acme"),
        MembershipAdded(tenant_id="t-1", user_id="u-1", role="admin"),
    ):
        event = new_event(payload, source="saas/test", actor=Actor.system("x"), tenant_id="t-1")
        name = type(payload).__name__
        root = {"$ref": f"#/components/schemas/{name}Event", "components": doc["components"]}
        jsonschema.Draft202012Validator(root).validate(json.loads(event.to_bytes()))
        broken = json.loads(event.to_bytes()) | {"type": "tenant.other"}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(root).validate(broken)


def _accounts(state: Path) -> list[tuple[str, str]]:
    if not state.exists():
        return []
    with sqlite3.connect(state) as conn:
        try:
            return conn.execute("SELECT tenant_id, slug FROM accounts ORDER BY slug").fetchall()
        except sqlite3.OperationalError:
            return []


def _start(stack, consumer: str, state: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(SUBSCRIBER),
            "--nats-url",
            stack.nats_url,
            "--consumer",
            consumer,
            "--state",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def _wait_accounts(state: Path, n: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(_accounts(state)) < n:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, f"{len(_accounts(state))} of {n} accounts"
        await asyncio.sleep(0.1)


@pytest.mark.e2e
async def test_example_subscriber_survives_restarts_without_missing_or_repeating(stack, tmp_path):
    bus = await connect(stack.nats_url)
    tag = uuid.uuid4().hex[:6]

    def created(n: int):
        return new_event(
            TenantCreated(
                tenant_id=f"{tag}-{n}", slug=f"t{tag}-{n:02d}", name=f"T{n}", schema_name="tenant_x"
            ),
            source="saas/tenancy",
            actor=Actor.system("tenancy-worker"),
            tenant_id=f"{tag}-{n}",
        )

    async def publish(events, suffix: str = "") -> None:
        for e in events:
            await bus.js.publish(e.type, e.to_bytes(), headers={"Nats-Msg-Id": e.id + suffix})

    first = [created(n) for n in range(5)]
    await publish(first)
    consumer, state = f"example-{tag}", tmp_path / "billing.db"
    proc = _start(stack, consumer, state)
    try:
        await _wait_accounts(state, 5, proc)
        proc.send_signal(signal.SIGKILL)  # killed, not stopped
        proc.wait(10)
        later = [created(n) for n in range(5, 10)]
        await publish(later)
        await publish(first[:2], suffix="-again")  # redelivered copies of events it already applied
        proc = _start(stack, consumer, state)
        await _wait_accounts(state, 10, proc)
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, output.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    accounts = _accounts(state)
    assert [slug for _, slug in accounts] == [f"t{tag}-{n:02d}" for n in range(10)]
    opened = [line for line in output.decode().splitlines() if line.startswith("opened account")]
    assert len(opened) == 5  # the second run applied only the five new ones
    await bus.close()

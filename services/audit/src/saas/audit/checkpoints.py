"""Chain heads checkpointed where the database cannot rewrite them: the AUDIT_CHECKPOINTS stream.

Whoever controls the database can delete a chain's last entries, a whole chain, or rewrite a
chain from some entry on and recompute every hash after it; the chain alone cannot show it. So
the audit process publishes each chain's length and head hash to a JetStream stream that allows
no deletes and no purges (`saas.common.events.stream`), and verification checks the chain against
every checkpoint ever published for it (`saas.audit.chain`).

Publishing is throttled: after a batch commits, its chains are marked, and every
`AUDIT_CHECKPOINT_INTERVAL` seconds the marked chains' heads are read back and published, so a
busy chain gets at most one checkpoint per interval. A process that starts publishes every
chain's head once, which covers what a crash left unpublished. The tail appended since the last
checkpoint is what an attacker could still remove unseen: keep the interval short.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Iterable

import orjson
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from saas.audit import store
from saas.audit.chain import Checkpoint
from saas.common.bus import Bus
from saas.common.components import Component
from saas.common.db import Database
from saas.common.events.stream import (
    AUDIT_CHECKPOINT_PREFIX,
    AUDIT_CHECKPOINTS_STREAM,
)
from saas.common.logging import get_logger
from saas.common.metrics import Metrics
from saas.common.settings import EventSettings

log = get_logger(__name__)
READ_TIMEOUT = 5.0


def subject_token(tenant_key: str) -> str:
    """A tenant key as one NATS subject token: `k` + unpadded base64url of its UTF-8 bytes.

    Tokens may not contain `.`, `*`, `>` or white space, nor be empty; the alphabet has none of
    them, and the prefix keeps the chain of events without a tenant (key "") a token too."""
    return "k" + base64.urlsafe_b64encode(tenant_key.encode()).decode().rstrip("=")


def tenant_key_of(token: str) -> str:
    """The tenant key of a token `subject_token` issued; anything else is refused."""
    encoded = token[1:]
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        key = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        key = None
    if not token.startswith("k") or key is None or subject_token(key) != token:
        raise ValueError(f"not a checkpoint subject token: {token!r}")
    return key


def subject_for(tenant_key: str) -> str:
    return f"{AUDIT_CHECKPOINT_PREFIX}.{subject_token(tenant_key)}"


def encode(checkpoint: Checkpoint) -> bytes:
    return orjson.dumps({"count": checkpoint.count, "hash": checkpoint.hash})


def decode(data: bytes) -> Checkpoint:
    body = orjson.loads(data)
    return Checkpoint(int(body["count"]), str(body["hash"]))


async def read(js: JetStreamContext, tenant_key: str) -> list[Checkpoint]:
    """Every checkpoint ever published for the chain, oldest first."""
    subject = subject_for(tenant_key)
    count = (await _checkpoints_per_subject(js, subject)).get(subject, 0)
    if not count:
        return []
    subscription = await js.subscribe(
        subject,
        stream=AUDIT_CHECKPOINTS_STREAM,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    try:
        return [decode((await subscription.next_msg(READ_TIMEOUT)).data) for _ in range(count)]
    finally:
        await subscription.unsubscribe()


async def checkpointed_tenants(js: JetStreamContext) -> list[str]:
    """Every chain that has a checkpoint, including chains no longer in the database."""
    prefix = AUDIT_CHECKPOINT_PREFIX + "."
    subjects = await _checkpoints_per_subject(js, prefix + ">")
    return sorted(tenant_key_of(s[len(prefix) :]) for s in subjects)


async def _checkpoints_per_subject(js: JetStreamContext, subjects: str) -> dict[str, int]:
    """How many checkpoints each subject matching `subjects` has; none before the audit process
    first declared the stream."""
    try:
        info = await js.stream_info(AUDIT_CHECKPOINTS_STREAM, subjects_filter=subjects)
    except NotFoundError:
        return {}
    return dict(info.state.subjects or {})


class CheckpointPublisher(Component):
    """Publishes the heads of the chains this process appended to (see the module's doc)."""

    name = "audit-checkpoints"

    def __init__(
        self,
        db: Database,
        bus: Bus,
        settings: EventSettings,
        *,
        interval: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.db, self.bus, self.settings, self.interval = db, bus, settings, interval
        self._marked: set[str] = set()
        self._everything = True  # the first round publishes every chain's head
        self._task: asyncio.Task[None] | None = None
        metrics = metrics or Metrics()
        self._published = metrics.counter(
            "audit_checkpoints_published_total", "Chain checkpoints published to AUDIT_CHECKPOINTS"
        )
        self._failures = metrics.counter(
            "audit_checkpoint_failures_total", "Rounds of checkpoints that failed to publish"
        )

    @classmethod
    def for_process(cls, process) -> CheckpointPublisher:
        settings = process.settings
        return cls(
            process.db,
            process.bus,
            settings,
            interval=settings.audit_checkpoint_interval,
            metrics=process.metrics,
        )

    def mark(self, tenant_keys: Iterable[str]) -> None:
        """Chains appended to in a committed transaction: their heads are due."""
        self._marked.update(tenant_keys)

    async def start(self) -> None:
        # The stream exists: the frame's StreamCheck waited for it before this component started.
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            try:
                await self.publish_due()
            except Exception as exc:
                self._failures.inc()
                log.warning("publishing audit checkpoints failed; retrying", error=repr(exc))
            await asyncio.sleep(self.interval)

    async def publish_due(self) -> int:
        """Publish the heads of the marked chains (every chain's, the first time); returns how many."""
        marked, everything = self._marked, self._everything
        self._marked = set()
        try:
            async with self.db.session() as session:
                heads = await store.chain_heads(session, None if everything else marked)
            for tenant_key, head in heads:
                token = subject_token(tenant_key)
                await self.bus.js.publish(
                    subject_for(tenant_key),
                    encode(head),
                    stream=AUDIT_CHECKPOINTS_STREAM,
                    headers={"Nats-Msg-Id": f"{token}:{head.count}"},
                )
                self._published.inc()
        except BaseException:
            self._marked |= marked  # due again next round
            raise
        self._everything = False
        return len(heads)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._marked:
            await self.publish_due()  # what the last batches appended

"""Pruning what can never be used again: expired tokens, old families, stale counters.

Runs every few minutes in each replica (a `Component`); each statement is idempotent, so
replicas running it at once do no harm.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from saas.common.components import Component
from saas.common.db import Database
from saas.common.logging import get_logger
from saas.identity.store.tables import (
    address_failures,
    invitations,
    one_time_tokens,
    refresh_families,
    refresh_tokens,
)

log = get_logger(__name__)
KEEP = timedelta(days=7)  # expired rows stay a while, for anyone investigating an incident


def statements(keep: timedelta = KEEP) -> list[sa.Executable]:
    cutoff = sa.func.now() - keep
    return [
        sa.delete(one_time_tokens).where(one_time_tokens.c.expires_at < cutoff),
        sa.delete(refresh_tokens).where(refresh_tokens.c.expires_at < cutoff),
        # A family with no token left can never be refreshed again.
        sa.delete(refresh_families).where(
            refresh_families.c.created_at < cutoff,
            ~sa.exists().where(refresh_tokens.c.family_id == refresh_families.c.id),
        ),
        sa.delete(invitations).where(invitations.c.expires_at < cutoff),
        sa.delete(address_failures).where(
            sa.func.greatest(address_failures.c.window_started_at, address_failures.c.blocked_until)
            < sa.func.now() - timedelta(days=1)
        ),
    ]


class Housekeeping(Component):
    name = "housekeeping"

    def __init__(self, db: Database, interval: float = 600.0) -> None:
        self.db = db
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.prune()

    async def prune(self) -> None:
        try:
            async with self.db.session() as session:
                for statement in statements():
                    await session.execute(statement)
        except Exception as exc:  # housekeeping must never take the service down
            log.warning("housekeeping failed", error=repr(exc))

    async def drain(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

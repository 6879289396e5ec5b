"""Temporal: the process's client connection, and the worker as a component.

Imported only by processes whose settings include `TemporalSettings`, so the others never load
the SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from saas.common.components import Component
from saas.common.logging import get_logger

log = get_logger(__name__)


class Temporal:
    """The connection to the Temporal frontend (readiness key `temporal`)."""

    name = "temporal"

    def __init__(self, host: str, namespace: str) -> None:
        self.host = host
        self.namespace = namespace
        self._client: Client | None = None

    async def connect(self) -> None:
        if self._client is None:
            self._client = await Client.connect(self.host, namespace=self.namespace)

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ConnectionError("temporal is not connected yet")
        return self._client

    async def check(self) -> None:
        if not await self.client.service_client.check_health():
            raise ConnectionError("temporal reports unhealthy")

    async def close(self) -> None:
        """The SDK's client holds no resources that need closing."""


class TemporalWorker(Component):
    """Runs workflows and activities on a task queue; at drain it stops polling and lets running
    activities finish within `graceful_timeout`."""

    def __init__(
        self,
        temporal: Temporal,
        *,
        task_queue: str,
        workflows: Sequence[type],
        activities: Sequence[Callable[..., Any]],
        graceful_timeout: float,
        **worker_options: Any,
    ) -> None:
        self.name = f"temporal-worker:{task_queue}"
        self.temporal = temporal
        self.task_queue = task_queue
        self.workflows = list(workflows)
        self.activities = list(activities)
        self.graceful_timeout = graceful_timeout
        self.worker_options = worker_options
        self._worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._worker = Worker(
            self.temporal.client,
            task_queue=self.task_queue,
            workflows=self.workflows,
            activities=self.activities,
            graceful_shutdown_timeout=timedelta(seconds=self.graceful_timeout),
            **self.worker_options,
        )
        self._task = asyncio.create_task(self._worker.run(), name=self.name)

    async def drain(self) -> None:
        if self._worker is not None and self._task is not None and not self._task.done():
            await self._worker.shutdown()  # waits for running activities up to the graceful timeout
        if self._task is not None:
            try:
                await self._task
            except Exception as exc:  # the worker already failed; nothing left to stop
                log.warning("temporal worker ended with an error", error=repr(exc))

"""Tracking in-flight work so that shutdown can let it finish."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from saas.common.logging import get_logger

log = get_logger(__name__)


def backoff(attempt: int, *, first: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): doubling from `first`, at most `cap`."""
    return min(cap, first * 2 ** max(0, attempt - 1))


class TaskTracker:
    """Background tasks a process must let finish (bus handlers, consumers) before it exits."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", task=task.get_name(), error=repr(task.exception()))

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> list[str]:
        """Wait up to `timeout` seconds for tracked tasks; cancel and name those still running."""
        if not self._tasks:
            return []
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        names = sorted(t.get_name() for t in pending)
        if pending:
            log.warning(
                "shutdown timeout expired with work in flight", count=len(pending), tasks=names
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return names

"""Tracking in-flight work so that shutdown can let it finish, and keeping stray threads from
holding a stopping process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
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


class DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's default executor: each call runs on a daemon thread, at most `limit` at
    once, and shutting down never waits for them.

    The loop resolves host names (`getaddrinfo`) in its default executor. With the standard one, a
    lookup stuck on a dying DNS server holds the process at exit (asyncio.run waits for the
    executor, the interpreter joins its threads) past its grace period, and Kubernetes kills it.
    Nothing a stopping process still runs there is worth waiting for: by then every component has
    stopped.
    """

    # A ThreadPoolExecutor only in name (asyncio accepts nothing else as the default executor):
    # none of its pool machinery is used.
    def __init__(self, limit: int = 8) -> None:
        super().__init__(max_workers=1)
        self._slots = threading.BoundedSemaphore(limit)
        self._closed = False

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        if self._closed:
            raise RuntimeError("executor is shut down")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def work() -> None:
            with self._slots:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)

        threading.Thread(target=work, name="executor", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True

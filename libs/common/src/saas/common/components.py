"""Background work a process runs, with one shape: start, drain, stop.

A component is anything that runs beside the request handlers for the life of the process: the
outbox relay, an event consumer, the Temporal worker, the next scheduler. The process wires it in
one line (`process.add(component)`) and the frame decides when each step runs
(`saas.common.process` documents the order):

- `start()`: begin; called once the process's connections are open. If it raises, the frame
  retries it with backoff (a dependency may still be coming up), so it must be safe to call again.
- `drain()`: at SIGTERM, stop taking new work (stop fetching, stop polling) and finish what is in
  hand. Components drain concurrently.
- `stop()`: after in-flight requests have finished: do the last of the work (the relay publishes
  what the last requests wrote) and release what `start` took. Called in reverse start order.

Each step runs within the process's shutdown budget; a component that overruns it is cancelled.
"""

from __future__ import annotations


class Component:
    """Base class of background work; override what applies."""

    name: str = "component"

    async def start(self) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        """Stop taking new work. Default: nothing to stop."""

    async def stop(self) -> None:
        """Finish and release. Default: nothing to release."""

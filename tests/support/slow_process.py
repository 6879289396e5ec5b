"""A process on the common frame with slow work, for the graceful-shutdown tests.

Run as `python slow_process.py`; OPS_PORT, NATS_URL and SHUTDOWN_TIMEOUT come from the environment.
`GET /slow?seconds=N` and bus request `svc.slowpoke.slow` both take N seconds.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from saas.common.bus import RequestContext
from saas.common.process import ServiceProcess
from saas.common.settings import BusSettings


class Slow(BaseModel):
    seconds: float


class Done(BaseModel):
    slept: float


def build() -> ServiceProcess:
    process = ServiceProcess("slowpoke", "1.0.0", BusSettings.load())

    @process.responder.operation("slow", Slow)
    async def slow(request: Slow, _: RequestContext) -> Done:
        await asyncio.sleep(request.seconds)
        return Done(slept=request.seconds)

    app = process.create_app()

    @app.get("/slow")
    async def slow_http(seconds: float) -> Done:
        await asyncio.sleep(seconds)
        return Done(slept=seconds)

    return process


if __name__ == "__main__":
    build().run()

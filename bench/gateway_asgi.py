"""Benchmark: the gateway's own Python per request, in-process, without sockets.

`bench/gateway.py` measures the whole path through real servers; on a shared machine its
requests/s move with everyone else's load. This one drives the gateway's public ASGI app (every
middleware, the rate limiter, the routes) directly, one request after another, with the bus
answering at once from canned replies (a real service's reply bytes: a session, a page of 20
projects) and tokens taken as verified, so what it counts is the gateway's own work per request:
no NATS or Redis client, no HTTP parsing, no system calls. Rate limits are counted in the
gateway's in-process limiter (no `REDIS_URL`), production's log level and format.

    .venv/bin/python bench/gateway_asgi.py                  # CPU us per request, by route
    .venv/bin/python bench/gateway_asgi.py --profile        # and cProfile's top functions

Prints, for each route, the best of --rounds rounds of --requests requests each: CPU
microseconds per request (`time.process_time`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LOG_FORMAT", "json")
os.environ.setdefault("LOG_LEVEL", "INFO")

from saas.common.bus.requests import encode_reply  # noqa: E402
from saas.common.contracts.identity import Session  # noqa: E402
from saas.common.contracts.tenancy import Project, Projects  # noqa: E402
from saas.common.tokens import Claims  # noqa: E402
from saas.gateway.main import build  # noqa: E402
from saas.gateway.settings import GatewaySettings  # noqa: E402

TOKEN = "bench-token"


def replies() -> dict[str, bytes]:
    now = datetime.now(UTC)
    page = Projects(
        items=[
            Project(
                id=str(uuid.uuid4()),
                name=f"Project {n}",
                description="x" * 40,
                created_by=str(uuid.uuid4()),
                created_at=now,
                updated_at=now,
            )
            for n in range(20)
        ],
        next_cursor="eyJ0IjogIjIwMjYtMTEtMjkifQ",
    )
    session = Session(
        user_id=str(uuid.uuid4()), session_id=None, platform_admin=False, expires_at=now
    )
    return {
        "svc.identity.users.session": encode_reply(session),
        "svc.tenancy.projects.list": encode_reply(page),
    }


class _Msg:
    headers = None

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Bus:
    """Answers at once with a service's reply bytes."""

    def __init__(self, canned: dict[str, bytes]) -> None:
        self.canned = canned

    async def request(self, subject: str, body: bytes, timeout: float, headers: dict) -> _Msg:
        return _Msg(self.canned[subject])


def app():
    settings = GatewaySettings(
        nats_url="nats://127.0.0.1:1",
        redis_url=None,
        rate_limit_user="100000000/minute",
        rate_limit_tenant="100000000/minute",
    )
    process = build(settings)
    process._bus._nc = _Bus(replies())  # type: ignore[union-attr]
    claims = Claims(str(uuid.uuid4()), None, None, False, time.time() + 3600, TOKEN)

    async def verify(token: str) -> Claims:
        return claims

    process.tokens.verify = verify  # type: ignore[method-assign]
    return process.public.app


def scope(path: str, query: bytes) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def serve(api, path: str, query: bytes, n: int) -> float:
    """CPU seconds per request over n requests."""
    statuses = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.process_time()
    for _ in range(n):
        await api(scope(path, query), receive, send)
    elapsed = time.process_time() - started
    assert set(statuses) == {200}, f"{path}: {set(statuses)}"
    return elapsed / n


ROUTES = {
    "session": ("/api/v1/users/me/session", b""),
    "projects": ("/api/v1/tenants/bench/projects", b"limit=20"),
}


async def main(requests: int, rounds: int, profile: bool) -> None:
    api = app()
    for name, (path, query) in ROUTES.items():
        await serve(api, path, query, 200)  # warm up
        best = min([await serve(api, path, query, requests) for _ in range(rounds)])
        print(f"{name:10} {best * 1e6:8.1f} us CPU per request  ({path}?{query.decode()})")
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await serve(api, path, query, requests)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one more round")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds, args.profile))

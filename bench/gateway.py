"""Benchmark: the gateway's throughput and latency against a bare FastAPI app, with wrk.

Starts embedded PostgreSQL, NATS and Valkey (or uses DATABASE_URL / NATS_URL / REDIS_URL), the
real identity and gateway processes as `saas dev` runs them (production's log level and JSON
logs), and a bare FastAPI hello-world on uvicorn with uvloop and httptools. Then, in one sitting,
at --connections (16) for --seconds (10) each:

- bare:     the hello-world;
- health:   the gateway's /health (its ops port);
- session:  GET /api/v1/users/me/session with a bearer token: the token verified (cached), one
            Redis round trip for the user's rate limit, one NATS request to identity, which
            verifies the token again and answers without the database;
- projects: GET /api/v1/tenants/{slug}/projects, a tenant's 20 projects, with the owner's
            bearer token: the gateway as above, then tenancy checks the token, the tenant
            (cached), the caller's role (identity, cached) and reads the page in the tenant's
            schema (one transaction).

Prints requests/s, p50 and p99 latency, errors, and each one's share of the bare app's rate.
Needs `wrk` (Debian: apt-get install wrk).

    .venv/bin/python bench/gateway.py
    .venv/bin/python bench/gateway.py --seconds 20 --connections 32
    .venv/bin/python bench/gateway.py --profile /tmp/pyspy/bin/py-spy   # where the time goes

With --profile (a py-spy binary; install it in a scratch venv, it is not a project dependency),
the session and project-list runs are sampled in the gateway, identity and tenancy, and the
functions that take the most time (themselves and with what they call) are printed for each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from functools import partial
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import running  # noqa: E402
from bench.profiling import sampling, top_frames  # noqa: E402
from saas.devstack.servers import free_port  # noqa: E402

PASSWORD = "plum-orbit-castle-91"
API = "/api/v1"
PROJECTS = 20


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str
    cpu_us: dict[str, float] | None = None  # CPU microseconds per request, by process
    system: dict[str, float] | None = None  # the kernel's share of that CPU time, by process


def cpu_seconds(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """Each process's CPU seconds so far: user, and system (the kernel, on its behalf)."""
    times = {name: psutil.Process(pid).cpu_times() for name, pid in pids.items()}
    return {name: (t.user, t.system) for name, t in times.items()}


def measured(result_of, pids: dict[str, int]) -> Result:
    """Run a wrk measurement and add each process's CPU time per request: a figure that holds
    when other work shares the machine, unlike requests per second."""
    before = cpu_seconds(pids)
    result = result_of()
    after = cpu_seconds(pids)
    requests = max(result.rps, 1e-9)
    seconds = float(result_of.keywords["seconds"])
    result.cpu_us, result.system = {}, {}
    for name in pids:
        user = after[name][0] - before[name][0]
        system = after[name][1] - before[name][1]
        result.cpu_us[name] = (user + system) / (requests * seconds) * 1e6
        result.system[name] = system / (user + system) if user + system else 0.0
    return result


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(name: str, url: str, *, seconds: int, connections: int, token: str | None = None) -> Result:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    errors = []
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors.append(f"{m.group(1)} non-2xx")
    if m := re.search(r"Socket errors: (.*)", out):
        errors.append(f"socket errors: {m.group(1)}")
    return Result(name, rps, _ms(*p50.groups()), _ms(*p99.groups()), ", ".join(errors) or "none")


def start_bare_app(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the bare app did not start"
            time.sleep(0.1)


async def access_token(http: httpx.AsyncClient, mail: Path) -> str:
    email = f"bench-{os.getpid()}-{int(time.time())}@example.com"
    registered = await http.post(
        f"{API}/auth/register", json={"email": email, "password": PASSWORD}
    )
    registered.raise_for_status()
    deadline = time.monotonic() + 30
    while True:
        for path in await asyncio.to_thread(lambda: list(mail.glob("*.eml"))):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if message["To"] == email:
                token = re.search(r"Token: (\S+)", message.get_content()).group(1)
                (
                    await http.post(f"{API}/auth/verify-email", json={"token": token})
                ).raise_for_status()
                login = await http.post(
                    f"{API}/auth/login", json={"email": email, "password": PASSWORD}
                )
                login.raise_for_status()
                return login.json()["access_token"]
        assert time.monotonic() < deadline, "no verification mail"
        await asyncio.sleep(0.2)


async def tenant_with_projects(http: httpx.AsyncClient, token: str) -> str:
    """A ready tenant of the bench's user with PROJECTS projects; its slug."""
    auth = {"Authorization": f"Bearer {token}"}
    slug = f"bench-{os.urandom(4).hex()}"
    created = await http.post(f"{API}/tenants", json={"slug": slug, "name": "Bench"}, headers=auth)
    assert created.status_code == 202, created.text
    deadline = time.monotonic() + 60
    while (await http.get(f"{API}/tenants/{slug}", headers=auth)).json()["status"] != "ready":
        assert time.monotonic() < deadline, f"tenant {slug} not ready within 60 s"
        await asyncio.sleep(0.2)
    for n in range(PROJECTS):
        made = await http.post(
            f"{API}/tenants/{slug}/projects",
            json={"name": f"Project {n}", "description": "x" * 40},
            headers=auth,
        )
        assert made.status_code == 201, made.text
    page = await http.get(f"{API}/tenants/{slug}/projects?limit={PROJECTS}", headers=auth)
    assert page.status_code == 200 and len(page.json()["items"]) == PROJECTS, page.text
    return slug


def report(results: list[Result]) -> None:
    bare = results[0].rps
    print(
        f"\n{'':10} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'of bare':>8}"
        f"  {'CPU us per request (kernel share)':58}  errors"
    )
    for r in results:
        share = f"{r.rps / bare:.0%}" if r.rps else "-"
        cpu = " ".join(
            f"{n} {us:.0f} ({r.system[n]:.0%} sys)" for n, us in (r.cpu_us or {}).items()
        )
        print(
            f"{r.name:10} {r.rps:11,.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {share:>8}"
            f"  {cpu:58}  {r.errors}"
        )


async def main(seconds: int, connections: int, log_level: str, py_spy: str | None) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    mail = Path(tempfile.mkdtemp(prefix="saas-bench-mail-"))
    bare_port = free_port()
    bare = start_bare_app(bare_port)
    try:
        async with running(
            ("identity", "tenancy", "tenancy-worker", "gateway"),
            servers=("postgres", "nats", "valkey", "temporal"),
            MAIL_DIR=str(mail),
            LOG_LEVEL=log_level,
            LOG_FORMAT="json",
            # Counted on every request, never reached: the limits are measured, not the refusals.
            RATE_LIMIT_USER="100000000/minute",
            RATE_LIMIT_TENANT="100000000/minute",
            RATE_LIMIT_ANONYMOUS="100000000/minute",
        ) as bench:
            gateway = bench.children["gateway"]
            async with httpx.AsyncClient(base_url=gateway.public_url, timeout=30) as http:
                token = await access_token(http, mail)
                session = await http.get(
                    f"{API}/users/me/session", headers={"Authorization": f"Bearer {token}"}
                )
                assert session.status_code == 200 and "ratelimit" in session.headers, session.text
                slug = await tenant_with_projects(http, token)
            print(
                f"wrk: {connections} connections, {seconds} s each; gateway LOG_LEVEL={log_level}"
            )
            run = {"seconds": seconds, "connections": connections}
            pids = {n: bench.children[n].process.pid for n in ("gateway", "identity", "tenancy")}
            results = [
                measured(
                    partial(wrk, "bare", f"http://127.0.0.1:{bare_port}/", **run),
                    {"bare": bare.pid},
                ),
                measured(partial(wrk, "health", f"{gateway.url}/health", **run), pids),
            ]
            profiles: dict[str, dict[str, Path]] = {}

            def sampled(run_name: str, url: str) -> Result:
                job = partial(wrk, run_name, url, token=token, **run)
                if not py_spy:
                    return measured(job, pids)
                folder = mail / run_name
                folder.mkdir()
                with sampling(py_spy, pids, folder) as profiles[run_name]:
                    return measured(job, pids)

            results.append(sampled("session", f"{gateway.public_url}{API}/users/me/session"))
            projects_url = f"{gateway.public_url}{API}/tenants/{slug}/projects?limit={PROJECTS}"
            results.append(sampled("projects", projects_url))
            report(results)
            for run_name, collapsed_by_process in profiles.items():
                for name, collapsed in collapsed_by_process.items():
                    print(f"\n{name}, during the {run_name} run ({collapsed}):")
                    top_frames(collapsed)
    finally:
        bare.terminate()
        bare.wait(10)
        if not py_spy:  # the profiles are kept for a closer look
            shutil.rmtree(mail, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--log-level", default="INFO", help="the processes' LOG_LEVEL (INFO: production's)"
    )
    parser.add_argument(
        "--profile",
        metavar="PY_SPY",
        help="a py-spy binary: sample the session and project-list runs",
    )
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.connections, args.log_level, args.profile))

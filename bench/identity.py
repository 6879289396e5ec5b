"""Benchmark: identity's tokens and logins.

Starts an embedded PostgreSQL and NATS (or uses DATABASE_URL / NATS_URL), applies the release steps,
and runs the real identity process (and, with --via gateway, the real gateway). Prints:

- the argon2id parameters and the time of one hash on this machine (in this process, one core),
  and what the cores allow: cores / time of one hash, the ceiling of logins per second;
- access-token verification per second in-process (`saas.common.tokens.TokenVerifier`, one
  core): with the verifier's cache of verified tokens off, so that every call checks the
  signature and the claims (the keys are fetched once); and, labelled as such, the same token
  answered from that cache (a dictionary lookup: what a client's later requests cost);
- login latency p50/p99 and throughput at --concurrency (8) over the bus (`svc.identity.login`,
  as the gateway sends it) or through the gateway (`POST /api/v1/auth/login`), and any error;
- refresh throughput at the same concurrency (each worker rotates its own family).

    .venv/bin/python bench/identity.py
    .venv/bin/python bench/identity.py --via gateway
    .venv/bin/python bench/identity.py --profile /tmp/pyspy/bin/py-spy   # where identity's time goes

With --profile (a py-spy binary; install it in a scratch venv, it is not a project dependency),
the identity process is sampled during the logins and the functions that take the most time are
printed (the sampler shares the machine: the login figures of such a run are not comparable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import Bench, running  # noqa: E402
from bench.measure import CpuMeter, pct  # noqa: E402
from bench.profiling import sampling, top_frames  # noqa: E402
from saas.common.bus import Bus, BusClient  # noqa: E402
from saas.common.contracts.identity import (  # noqa: E402
    Accepted,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
)
from saas.common.errors import ServiceError  # noqa: E402
from saas.common.tokens import TokenPolicy, TokenVerifier  # noqa: E402
from saas.identity.passwords import Passwords, available_cpus  # noqa: E402
from saas.identity.settings import IdentitySettings  # noqa: E402

PASSWORD = "plum-orbit-castle-91"


def loop_thread_seconds(process: psutil.Process) -> float:
    """CPU seconds of a process's main thread: its event loop (hashing runs on other threads)."""
    return next(t.user_time + t.system_time for t in process.threads() if t.id == process.pid)


def cpu_per_login(cpu: dict[str, float], loop: float, machine: float, logins: int) -> str:
    """Milliseconds of CPU per login: identity's (its event loop thread and its other threads, the
    hashing pool), each other process's, and the rest of the machine's busy time (others' work)."""

    def ms(seconds: float) -> str:
        return f"{seconds / logins * 1000:.1f} ms"

    parts = [
        f"identity {ms(cpu['identity'])} (event loop thread {ms(loop)}, "
        f"other threads: the hashing pool {ms(cpu['identity'] - loop)})",
        *(f"{name} {ms(seconds)}" for name, seconds in cpu.items() if name != "identity"),
        f"the rest of the machine (other work) {ms(machine - sum(cpu.values()))}",
    ]
    return "CPU per login            " + ", ".join(parts)


async def one_hash_seconds(settings: IdentitySettings, rounds: int = 30) -> float:
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
        threads=1,
    )
    digest = await passwords.hash(PASSWORD)
    started = time.perf_counter()
    for _ in range(rounds):
        passwords.hasher.verify(digest, PASSWORD)  # on this thread: the bare cost of one hash
    passwords.close()
    return (time.perf_counter() - started) / rounds


async def pool_hashes_per_second(
    settings: IdentitySettings, concurrency: int, seconds: float = 4.0
) -> float:
    """What the hashing pool alone does on this machine right now (other load included)."""
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
    )
    digest = await passwords.hash(PASSWORD)
    done, started = 0, time.perf_counter()

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() - started < seconds:
            await passwords.verify(digest, PASSWORD)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    passwords.close()
    return done / (time.perf_counter() - started)


async def verifications_per_second(
    token: str, jwks: dict, *, cached: bool, seconds: float = 3.0
) -> float:
    """`TokenVerifier.verify` of one token in a loop: without the cache of verified tokens, each
    call checks the signature and the claims; with it, each call after the first is a lookup."""

    async def fetch() -> dict:
        return jwks

    policy = TokenPolicy("saas-identity", "saas-api")
    verifier = (
        TokenVerifier(fetch, policy) if cached else TokenVerifier(fetch, policy, cache_size=0)
    )
    await verifier.verify(token)  # keys fetched from here on
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            await verifier.verify(token)
        count += 200
    return count / (time.perf_counter() - started)


class Caller:
    """Logins and refreshes over the bus (as the gateway sends them) or through the gateway."""

    def __init__(self, via: str, client: BusClient, http: httpx.AsyncClient | None) -> None:
        self.via, self.client, self.http = via, client, http

    async def login(self, email: str) -> TokenPair:
        if self.via == "gateway":
            response = await self.http.post(
                "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
            )
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            return TokenPair.model_validate(response.json())
        return await self.client.request(
            "identity",
            "login",
            LoginRequest(email=email, password=PASSWORD),
            TokenPair,
            client_ip="192.0.2.1",
            timeout=30,
        )

    async def refresh(self, token: str) -> TokenPair:
        if self.via == "gateway":
            response = await self.http.post("/api/v1/auth/refresh", json={"refresh_token": token})
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            return TokenPair.model_validate(response.json())
        return await self.client.request(
            "identity", "refresh", RefreshRequest(refresh_token=token), TokenPair, timeout=30
        )


async def closed_loop(concurrency: int, total: int, work) -> tuple[list[float], Counter, float]:
    """`total` calls of `work(worker)` by `concurrency` workers, each waiting for its answer."""
    latencies: list[float] = []
    errors: Counter = Counter()
    remaining = total

    async def worker(n: int) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                await work(n)
                latencies.append(time.perf_counter() - started)
            except (ServiceError, RuntimeError) as exc:
                errors[getattr(exc, "code", str(exc))] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    names = ("identity", "gateway") if args.via == "gateway" else ("identity",)
    with tempfile.TemporaryDirectory(prefix="saas-bench-mail-") as mail:  # removed also on Ctrl-C
        extra = {"MAIL_DIR": mail, "ADDRESS_FAILURES_LIMIT": "100000"}
        async with running(names, **extra) as bench:
            await measure(args, bench)


async def measure(args: argparse.Namespace, bench: Bench) -> None:
    children = bench.children
    bus = Bus(bench.nats_url, name="bench")
    http = None
    try:
        await bus.connect()
        client = BusClient(bus, timeout=30)
        if args.via == "gateway":
            http = httpx.AsyncClient(base_url=children["gateway"].public_url, timeout=30)
        caller = Caller(args.via, client, http)
        settings = IdentitySettings()
        identity = psutil.Process(children["identity"].process.pid)

        hash_s = await one_hash_seconds(settings)
        cores = available_cpus()
        ceiling = cores / hash_s
        pool_rate = await pool_hashes_per_second(settings, args.concurrency)

        emails = [f"bench-{uuid.uuid4().hex[:8]}-{n}@example.com" for n in range(args.concurrency)]
        for email in emails:
            await client.request(
                "identity", "register", RegisterRequest(email=email, password=PASSWORD), Accepted
            )
        pair = await caller.login(emails[0])
        jwks = (await bus.nc.request("svc.identity.jwks", b"{}", timeout=5)).data
        import orjson

        jwks = orjson.loads(jwks)["data"]
        verify_rate = await verifications_per_second(pair.access_token, jwks, cached=False)
        cached_rate = await verifications_per_second(pair.access_token, jwks, cached=True)

        profile_folder = (
            Path(tempfile.mkdtemp(prefix="saas-bench-profile-")) if args.profile else None
        )
        for email in emails:  # warm-up: every worker's first login
            await caller.login(email)
        processes = {
            "identity": identity,
            **{n: psutil.Process(c.process.pid) for n, c in children.items() if n != "identity"},
            "bench client": psutil.Process(),
            **bench.servers,
        }
        meter = CpuMeter(processes, trees=("postgres",))
        meter.start()
        loop0 = loop_thread_seconds(identity)
        with (
            sampling(args.profile, {"identity": identity.pid}, profile_folder)
            if args.profile
            else nullcontext({})
        ) as profiles:
            latencies, errors, elapsed = await closed_loop(
                args.concurrency, args.logins, lambda n: caller.login(emails[n])
            )
        cpu, machine_cpu = meter.stop()
        loop_cpu = loop_thread_seconds(identity) - loop0

        tokens = [(await caller.login(e)).refresh_token for e in emails]

        async def rotate(n: int) -> None:
            tokens[n] = (await caller.refresh(tokens[n])).refresh_token

        r_latencies, r_errors, r_elapsed = await closed_loop(
            args.concurrency, args.refreshes, rotate
        )

        rate = len(latencies) / elapsed
        print(
            f"load average             {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
            f"machine                  {cores} cores ({psutil.cpu_count()} logical), "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB\n"
            f"argon2id                 t={settings.argon2_time_cost} "
            f"m={settings.argon2_memory_cost} KiB p={settings.argon2_parallelism}: "
            f"one hash {hash_s * 1000:.1f} ms -> ceiling {ceiling:.1f} logins/s on {cores} cores\n"
            f"hashing pool alone       {pool_rate:.1f} hashes/s at concurrency {args.concurrency} "
            f"(measured now, with whatever else runs on the machine)\n"
            f"token verification       {verify_rate:,.0f} /s in-process (one core: signature and "
            f"claims checked on every call)\n"
            f"  from the verifier's cache {cached_rate:,.0f} /s (the same token again: a lookup, "
            f"no verification)\n"
            f"logins via {args.via:<13} {len(latencies)} at concurrency {args.concurrency}: "
            f"{rate:.1f} /s ({rate / ceiling:.0%} of the ceiling, {rate / pool_rate:.0%} of the pool alone), "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms "
            f"({statistics.median(latencies) / hash_s:.1f}x one hash), "
            f"p99 {pct(latencies, 0.99) * 1000:.0f} ms, errors {dict(errors) or 'none'}; "
            f"identity CPU {cpu['identity'] / len(latencies) * 1000:.1f} ms per login\n"
            f"{cpu_per_login(cpu, loop_cpu, machine_cpu, len(latencies))}; machine busy "
            f"{machine_cpu / elapsed / cores:.0%}\n"
            f"refreshes via {args.via:<10} {len(r_latencies)} at concurrency {args.concurrency}: "
            f"{len(r_latencies) / r_elapsed:.0f} /s, p50 {statistics.median(r_latencies) * 1000:.1f} ms, "
            f"p99 {pct(r_latencies, 0.99) * 1000:.1f} ms, errors {dict(r_errors) or 'none'}"
        )
        for name, collapsed in profiles.items():
            print(f"\n{name}, during the logins ({collapsed}, sampled with py-spy):")
            top_frames(collapsed)
    finally:
        if http is not None:
            await http.aclose()
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="identity: tokens and logins")
    parser.add_argument("--via", choices=("bus", "gateway"), default="bus")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--logins", type=int, default=400)
    parser.add_argument("--refreshes", type=int, default=3000)
    parser.add_argument(
        "--profile", metavar="PY_SPY", help="a py-spy binary: sample identity during the logins"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Benchmark: does a second hashing thread make each hash dearer, and is it the memory?

The identity bench's ceiling (cores / one hash) assumes that two hashes at once each cost what
one alone does. This measures it: per operation, the wall time and the thread's own CPU time
(`RUSAGE_THREAD`), one thread alone and then two threads at once, alternately, for

- argon2id with identity's parameters (t=2, m=19456 KiB, p=1): 19 MiB per hash, far more than a
  core's L2, so it works in the L3 and memory that both cores (and a host's other guests) share;
- argon2id with m=256 KiB (fits in L2) and t=150, about as much computing per hash;
- PBKDF2-SHA256, 20,000 rounds: computing only, no memory to speak of.

All three release the GIL. If only the first gets dearer with two threads, the shared memory
system is the reason; if all do, the two CPUs are not independent (host hyperthreads, or other
work on them). CPU time per operation holds up when the machine is busy; wall time does not.

    .venv/bin/python bench/hash_scaling.py            # 3 rounds of 4 s per case
    .venv/bin/python bench/hash_scaling.py --seconds 8 --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import threading
import time
from collections.abc import Callable

from argon2 import PasswordHasher, Type

PASSWORD = "plum-orbit-castle-91"


def argon2id(memory_kib: int, time_cost: int) -> Callable[[], object]:
    hasher = PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=Type.ID
    )
    digest = hasher.hash(PASSWORD)
    return lambda: hasher.verify(digest, PASSWORD)


def pbkdf2() -> Callable[[], object]:
    return lambda: hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), b"sixteen byte salt", 20_000)


def _thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def _work(op: Callable[[], object], seconds: float, out: list[tuple[float, float]]) -> None:
    op()  # warm
    cpu0, wall0, done = _thread_cpu(), time.perf_counter(), 0
    while time.perf_counter() - wall0 < seconds:
        op()
        done += 1
    out.append(((time.perf_counter() - wall0) / done, (_thread_cpu() - cpu0) / done))


def per_op(op: Callable[[], object], threads: int, seconds: float) -> tuple[float, float]:
    """Mean wall and CPU seconds per operation with `threads` threads doing it at once."""
    out: list[tuple[float, float]] = []
    workers = [threading.Thread(target=_work, args=(op, seconds, out)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(o[0] for o in out) / len(out), sum(o[1] for o in out) / len(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per case and thread count")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cases = {
        "argon2id t=2 m=19456 KiB": argon2id(19456, 2),
        "argon2id t=150 m=256 KiB": argon2id(256, 150),
        "pbkdf2-sha256 20,000": pbkdf2(),
    }
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'':26} {'one thread':>22}   {'two at once, each':>22}   CPU per op  throughput")
    for _ in range(args.rounds):
        for name, op in cases.items():
            wall1, cpu1 = per_op(op, 1, args.seconds)
            wall2, cpu2 = per_op(op, 2, args.seconds)
            print(
                f"{name:26} {wall1 * 1000:7.1f} ms wall {cpu1 * 1000:5.1f} CPU"
                f"   {wall2 * 1000:7.1f} ms wall {cpu2 * 1000:5.1f} CPU"
                f"   x{cpu2 / cpu1:4.2f}      {2 * wall1 / wall2:4.2f} of 2x",
                flush=True,
            )


if __name__ == "__main__":
    main()

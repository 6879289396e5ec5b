"""Sampling the benchmarks' processes with py-spy (a binary given on the command line: install it
in a scratch venv, it is not a project dependency), and printing where the samples fall."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def sampling(
    py_spy: str, pids: dict[str, int], folder: Path, rate: int = 200
) -> Iterator[dict[str, Path]]:
    """py-spy on each process for as long as the block runs; yields where each writes its
    collapsed stacks (written when the block ends: py-spy stops on SIGINT and saves)."""
    outputs: dict[str, Path] = {}
    samplers = []
    for name, pid in pids.items():
        outputs[name] = folder / f"{name}.txt"
        samplers.append(
            subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(rate),
                    "--format",
                    "raw",
                    "--output",
                    str(outputs[name]),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        yield outputs
    finally:
        for sampler in samplers:
            sampler.send_signal(signal.SIGINT)
        for sampler in samplers:
            sampler.wait(60)


def top_frames(collapsed: Path, n: int = 45) -> None:
    """The functions with the most samples on the stack (inclusive), and where samples end
    (exclusive: the function itself running)."""
    inclusive: dict[str, int] = {}
    exclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        total += samples
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        exclusive[frames[-1]] = exclusive.get(frames[-1], 0) + samples
    print(f"  {total} samples; inclusive (function and what it calls):")
    for frame, samples in sorted(inclusive.items(), key=lambda kv: -kv[1])[:n]:
        print(f"    {samples / total:6.1%}  {frame}")
    print("  exclusive (the function itself):")
    for frame, samples in sorted(exclusive.items(), key=lambda kv: -kv[1])[:n]:
        print(f"    {samples / total:6.1%}  {frame}")

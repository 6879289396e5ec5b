"""What the event benchmarks measure and print: one run's result, CPU by process, percentiles."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

import psutil

DRAINED = "drained"  # written first, then the consumer side started: a backlog drained
ALONGSIDE = "writer alongside"  # the writer or publisher runs while the pipeline drains


@dataclass
class Result:
    side: str
    mode: str
    events: int
    seconds: float  # from the first publish (drained) or first write (alongside) to the last commit
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process, over the run
    machine_busy: float = 0.0  # CPU seconds the whole machine was busy, everyone's
    load: float = 0.0  # the machine's 1-minute load average when the run started
    lost: int = 0
    duplicated: int = 0
    chains_ok: bool | None = None  # only ours keeps hash chains
    details: list[str] = field(default_factory=list)  # what a run of one side alone prints

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.chains_ok is not False

    def verdict(self) -> str:
        chains = {None: "", True: ", chains intact", False: ", chains BROKEN"}[self.chains_ok]
        word = "OK" if self.ok else "FAIL"
        return f"{word}: {self.lost} lost, {self.duplicated} duplicated{chains}"

    def cpu_line(self) -> str:
        per = 1000 / self.events
        parts = [f"{name} {s * per:.3f}" for name, s in self.cpu.items()]
        return "ms of CPU per event: " + ", ".join(parts)


class CpuMeter:
    """CPU seconds each named process used between `start` and `stop` (for those named in
    `trees`, with its descendants: a PostgreSQL server's backends), and the whole machine's busy
    time."""

    def __init__(self, processes: dict[str, psutil.Process], trees: tuple[str, ...] = ()) -> None:
        self.processes = processes
        self.trees = trees
        self._before: dict[str, dict[int, float]] = {}
        self._busy = 0.0
        self.load = 0.0

    def start(self) -> None:
        self._before = {name: self._cpu(name, p) for name, p in self.processes.items()}
        self._busy = busy_seconds()
        self.load = os.getloadavg()[0]

    def stop(self) -> tuple[dict[str, float], float]:
        used = {}
        for name, process in self.processes.items():
            before, now = self._before[name], self._cpu(name, process)
            used[name] = sum(now[pid] - before.get(pid, 0.0) for pid in now)
        return used, busy_seconds() - self._busy

    def _cpu(self, name: str, process: psutil.Process) -> dict[int, float]:
        return _tree_cpu(process, with_children=name in self.trees)


def _tree_cpu(process: psutil.Process, *, with_children: bool) -> dict[int, float]:
    """CPU seconds of a process and, if asked, each of its live descendants, by pid."""
    found = {}
    for p in (process, *(_children(process) if with_children else ())):
        try:
            times = p.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        found[p.pid] = times.user + times.system
        if with_children and p is process:  # and the children it has reaped (ended backends)
            found[p.pid] += times.children_user + times.children_system
    return found


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every process, ours and anyone else's)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]

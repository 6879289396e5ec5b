"""The metrics each process exports, read from its own registry.

`python -m tests.support.exported_metrics` builds every declared process (nothing is connected:
building only creates clients and declares metrics) and prints, per process, the sample names
its registry exports, as Prometheus scrapes them (`_total`, `_bucket`, `_sum`, `_count`...).
What a process declares only once it runs (a bus responder's) is not in the registry yet; the
alert rules and dashboards use none of it. A subprocess keeps the test session's environment,
logging and imports clean.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The sample names prometheus_client writes for a family of each type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def exported() -> dict[str, list[str]]:
    from saas.common.cli import discover_processes

    result = {}
    for spec in discover_processes():
        process = spec.build()
        if process.public is not None and hasattr(process.public.app, "build_middleware_stack"):
            # The public app's middleware (the request histogram) is made on its first request.
            process.public.app.build_middleware_stack()
        names = set()
        for family in process.metrics.registry.collect():
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
        result[spec.name] = sorted(names)
    return result


@cache
def by_process() -> dict[str, frozenset[str]]:
    env = {**os.environ, "APP_ENV": "development"}
    out = subprocess.run(
        [sys.executable, "-m", "tests.support.exported_metrics"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    ).stdout
    return {name: frozenset(names) for name, names in json.loads(out.splitlines()[-1]).items()}


def every() -> frozenset[str]:
    return frozenset().union(*by_process().values())


def asked_of_the_wrong_process(expr: str) -> list[str]:
    """Each `metric{service="X"}` in `expr` that process X does not export. `service` is the
    process's name (the scrape configs set it), so such a selector matches only X's series."""
    problems = []
    for metric, matchers in re.findall(r"\b((?:saas|process)_[a-z0-9_]+)\{([^}]*)\}", expr):
        for service in re.findall(r'service="([^"]+)"', matchers):
            exports = by_process().get(service)
            if exports is None:
                problems.append(f"no process is called {service}")
            elif metric not in exports:
                problems.append(f"{service} does not export {metric}")
    return problems


if __name__ == "__main__":
    print(json.dumps(exported()))

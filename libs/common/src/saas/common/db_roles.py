"""The database logins: one that migrates and owns, one per service that only uses.

A login that owns a table can disable its triggers, and one that owns a schema can drop it; a
login that is a member of the owner can `SET ROLE` to it. So the runtime logins own nothing and
can become no one:

- `saas_migrate` runs `saas db upgrade`: it creates and owns the owner schemas (`identity`,
  `audit`) and tenancy's tables in `public`, and its migrations grant the runtime logins what
  they need (`grant_schema_access_v1`), with default privileges for later tables.
- `saas_identity` and `saas_tenancy` get USAGE and row access (SELECT, INSERT, UPDATE, DELETE)
  on their own schema's tables and sequences. Tenancy's worker creates tenant schemas at run time,
  so `saas_tenancy` may CREATE schemas in the database and owns the `tenant_<slug>` schemas it
  creates, but nothing in `public`, `identity` or `audit`.
- `saas_audit` is a member of `audit_writer` only, which may SELECT and INSERT on `audit.events`.

`bootstrap_roles` (the command `saas db bootstrap-roles`) creates them, idempotently, as a
superuser or a login with CREATEROLE that owns the database. The dev stack, the test session and
compose's `migrate` service run it; in production the DBA runs it once (infra/postgres/README.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from saas.common.tenant_names import quote_schema, validate_identifier

if TYPE_CHECKING:
    from alembic.operations import Operations

# SQLAlchemy and the settings are imported by the functions that connect: the logins' names are
# read by every service's `ProcessSpec`, which the `saas` command loads to start.

AUDIT_WRITER = "audit_writer"  # NOLOGIN: what the audit login may do, and no more
ROW_ACCESS = "SELECT, INSERT, UPDATE, DELETE"


@dataclass(frozen=True)
class Login:
    name: str
    key: str  # names its settings: <KEY>_DATABASE_URL (as in the Kubernetes Secret), <KEY>_DATABASE_PASSWORD
    creates_schemas: bool = False
    member_of: tuple[str, ...] = ()

    @property
    def url_env(self) -> str:
        return f"{self.key}_DATABASE_URL"

    @property
    def password_env(self) -> str:
        return f"{self.key}_DATABASE_PASSWORD"


MIGRATE = Login("saas_migrate", "MIGRATE", creates_schemas=True)
IDENTITY = Login("saas_identity", "IDENTITY")
TENANCY = Login("saas_tenancy", "TENANCY", creates_schemas=True)
AUDIT = Login("saas_audit", "AUDIT", member_of=(AUDIT_WRITER,))
RUNTIME_LOGINS = (IDENTITY, TENANCY, AUDIT)
LOGINS = (MIGRATE, *RUNTIME_LOGINS)


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores for `password` (RFC 5803 form), computed here
    so that the password itself never reaches the server's logs or `pg_stat_activity`."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    stored_key = hashlib.sha256(client_key).digest()
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ensure_role(name: str, attributes: str) -> str:
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(name)}) "
        f"THEN CREATE ROLE {name} {attributes}; END IF; END $$"
    )


def bootstrap_statements(database: str, verifiers: Mapping[str, str]) -> list[str]:
    """Idempotent SQL that creates the logins and gives them their database-wide rights.

    `verifiers` maps a login to its SCRAM secret; a login left out keeps its password. Schema and
    table rights come with the migrations, which run as the migration login."""
    db = _quote_identifier(database)
    sql = [_ensure_role(AUDIT_WRITER, "NOLOGIN")]
    for login in LOGINS:
        validate_identifier(login.name)
        sql.append(_ensure_role(login.name, "LOGIN"))
        if login.name in verifiers:
            sql.append(f"ALTER ROLE {login.name} PASSWORD {_literal(verifiers[login.name])}")
        sql.append(f"GRANT CONNECT ON DATABASE {db} TO {login.name}")
        if login.creates_schemas:
            sql.append(f"GRANT CREATE ON DATABASE {db} TO {login.name}")
        sql += [f"GRANT {role} TO {login.name}" for role in login.member_of]
    # Tenancy's tables live in `public`: only the migration login may create there.
    sql.append("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    sql.append(f"GRANT CREATE ON SCHEMA public TO {MIGRATE.name}")
    return sql


# A runtime login with one of these, or a membership it was not given here, could escape its
# role: bootstrap refuses to finish and says which.
_ESCAPES = """
SELECT rolname || ' has ' || concat_ws(', ',
    CASE WHEN rolsuper THEN 'SUPERUSER' END, CASE WHEN rolcreaterole THEN 'CREATEROLE' END,
    CASE WHEN rolcreatedb THEN 'CREATEDB' END, CASE WHEN rolbypassrls THEN 'BYPASSRLS' END,
    CASE WHEN rolreplication THEN 'REPLICATION' END)
FROM pg_roles WHERE rolname = ANY($1::text[])
  AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication)
UNION ALL
SELECT pg_get_userbyid(member) || ' is a member of ' || pg_get_userbyid(roleid)
FROM pg_auth_members
WHERE pg_get_userbyid(member) = ANY($1::text[])
  AND NOT (pg_get_userbyid(member) || ':' || pg_get_userbyid(roleid)) = ANY($2::text[])
"""


class UnsafeRoleError(RuntimeError):
    """A runtime login could act as more than itself; `problems` names how."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("runtime logins could escape their roles: " + "; ".join(problems))


async def bootstrap_roles(admin_url: str, passwords: Mapping[str, str | None]) -> None:
    """Create or update the logins (see the module's doc) through `admin_url`.

    `passwords` maps login names to passwords; a missing or empty one leaves that login's
    password as it is. Raises `UnsafeRoleError` when a runtime login has more than it should."""
    from sqlalchemy import pool
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from saas.common.db import engine_options
    from saas.common.settings import DatabaseSettings

    settings = DatabaseSettings(database_url=admin_url)
    database = make_url(settings.database_url).database or "postgres"
    verifiers = {name: scram_verifier(pw) for name, pw in passwords.items() if pw}
    options = engine_options(settings, application_name="saas-bootstrap-roles")
    engine = create_async_engine(
        settings.database_url, poolclass=pool.NullPool, connect_args=options["connect_args"]
    )
    try:
        async with engine.begin() as conn:
            for statement in bootstrap_statements(database, verifiers):
                await conn.exec_driver_sql(statement)
            expected = [f"{login.name}:{role}" for login in LOGINS for role in login.member_of]
            runtime = [login.name for login in RUNTIME_LOGINS]
            raw = (await conn.get_raw_connection()).driver_connection
            problems = [r[0] for r in await raw.fetch(_ESCAPES, runtime, expected)]
        if problems:
            raise UnsafeRoleError(problems)
    finally:
        await engine.dispose()


def login_url(admin_url: str, login: str, password: str) -> str:
    """The URL of `login` on the server and database of `admin_url`."""
    from sqlalchemy.engine import make_url

    url = make_url(admin_url).set(username=login, password=password)
    return url.render_as_string(hide_password=False)


def grant_schema_access_v1(
    op: Operations, schema: str, role: str, privileges: str = ROW_ACCESS
) -> None:
    """For migrations: `role` may use `schema`'s tables (now and later ones the migrating login
    creates) with `privileges`, and its sequences, but not the version table. Never changes once
    released (a later change is a `_v2` and a new migration)."""
    quoted = quote_schema(schema)
    validate_identifier(role)
    op.execute(f"GRANT USAGE ON SCHEMA {quoted} TO {role}")
    op.execute(f"GRANT {privileges} ON ALL TABLES IN SCHEMA {quoted} TO {role}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {quoted} TO {role}")
    op.execute(f"REVOKE ALL ON {quoted}.alembic_version FROM {role}")
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT {privileges} ON TABLES TO {role}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT USAGE, SELECT ON SEQUENCES TO {role}"
    )


def revoke_schema_access_v1(op: Operations, schema: str, role: str) -> None:
    """Undoes `grant_schema_access_v1` (for downgrades)."""
    quoted = quote_schema(schema)
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} REVOKE ALL ON SEQUENCES FROM {role}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} REVOKE ALL ON TABLES FROM {role}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {quoted} FROM {role}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {quoted} FROM {role}")
    op.execute(f"REVOKE USAGE ON SCHEMA {quoted} FROM {role}")

"""Database engine factory and tenant sessions.

Statement caches are off on both layers (asyncpg's and SQLAlchemy's prepared statements):
behind PgBouncer in transaction mode a cached plan could run on another tenant's search path.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_

from saas.common.settings import DatabaseSettings, DatabaseSSLMode
from saas.common.tenant_names import quote_schema, schema_for


def _ssl_argument(mode: DatabaseSSLMode) -> Any:
    if mode is DatabaseSSLMode.DISABLE:
        return False
    if mode in (DatabaseSSLMode.PREFER, DatabaseSSLMode.REQUIRE):
        return mode.value  # asyncpg understands libpq's sslmode names
    context = ssl_module.create_default_context()
    context.check_hostname = mode is DatabaseSSLMode.VERIFY_FULL
    return context


def engine_options(settings: DatabaseSettings, application_name: str = "saas") -> dict[str, Any]:
    """Keyword arguments for `create_async_engine`, from the seed's pool settings."""
    server_settings = {
        "application_name": application_name,
        "statement_timeout": _milliseconds(settings.db_statement_timeout),
        "lock_timeout": _milliseconds(settings.db_lock_timeout),
        "idle_in_transaction_session_timeout": _milliseconds(
            settings.db_idle_in_transaction_timeout
        ),
    }
    if settings.database_role:
        # Sent at connection start-up: the session acts as this role, so privileges are the role's.
        server_settings["role"] = settings.database_role
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": settings.db_pool_pre_ping,
        # A failed statement's message must not carry its parameters (emails, token hashes, ...)
        # into logs, readiness bodies or dead-letter headers.
        "hide_parameters": True,
        "connect_args": {
            "statement_cache_size": 0,  # asyncpg
            "prepared_statement_cache_size": 0,  # SQLAlchemy's asyncpg dialect
            "ssl": _ssl_argument(settings.database_ssl_mode),
            "server_settings": server_settings,
        },
    }


def _milliseconds(seconds: float) -> str:
    return str(int(seconds * 1000))


def create_engine(
    settings: DatabaseSettings, application_name: str = "saas", **overrides: Any
) -> AsyncEngine:
    options = engine_options(settings, application_name)
    engine = create_async_engine(settings.database_url, **{**options, **overrides})
    engine.dialect.do_ping = _ping  # type: ignore[method-assign]
    return engine


def _ping(dbapi_connection: Any) -> bool:
    """The pool's pre-ping in one round trip: a simple query, which is its own transaction
    and so also what PgBouncer in transaction mode expects. SQLAlchemy's asyncpg dialect pings
    with BEGIN, a `;` prepared and then executed, and ROLLBACK: four round trips before every
    transaction of every process, as many as the outbox relay's whole batch otherwise takes.
    Errors go through the adapter's own translation, so that a dead connection is recognised
    as a disconnect and replaced, as with the dialect's ping."""
    try:
        await_(dbapi_connection.driver_connection.execute("SELECT 1"))
    except Exception as error:
        dbapi_connection._handle_exception(error)
    return True


class Database:
    """A process's engine and session factory."""

    def __init__(self, engine: AsyncEngine, *, ssl: Any = False) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._ssl = ssl

    @classmethod
    def from_settings(
        cls, settings: DatabaseSettings, application_name: str = "saas", **overrides: Any
    ) -> Database:
        engine = create_engine(settings, application_name, **overrides)
        return cls(engine, ssl=_ssl_argument(settings.database_ssl_mode))

    async def connect_raw(self) -> asyncpg.Connection:
        """A connection outside the pool, for LISTEN (which must outlive any transaction)."""
        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return await asyncpg.connect(url, ssl=self._ssl)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def get_tenant_session(self, slug: str) -> AsyncIterator[AsyncSession]:
        """A transaction whose search path is the tenant's schema only.

        `SET LOCAL` ends with the transaction, so the connection goes back to the pool with its
        path at the server default, also behind PgBouncer in transaction mode.
        """
        schema = quote_schema(schema_for(slug))
        async with self.session() as session:
            await session.execute(text(f"SET LOCAL search_path TO {schema}"))
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

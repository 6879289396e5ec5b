"""Database engine factory and tenant sessions.

Statement caches are off on both layers (asyncpg's and SQLAlchemy's prepared statements):
behind PgBouncer in transaction mode a cached plan could run on another tenant's search path.
On PostgreSQL itself a kept statement is parsed again when the search path or a table changes,
but the client keeps decoding its rows with the column types it was prepared with: after
`ALTER COLUMN ... TYPE integer` in another process (a tenant migration), or under another
tenant's schema a migration behind, an integer came back as the text '\x00\x00\x00\x06'
(PostgreSQL 18, asyncpg 0.32), with no error. Parsing every statement costs a round trip; wrong
rows would cost more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    create_async_engine,
)
from sqlalchemy.sql.base import Executable
from sqlalchemy.util import await_

from saas.common.db_connect import connect_args, ssl_argument
from saas.common.settings import DatabaseSettings
from saas.common.tenant_names import quote_schema, schema_for

T = TypeVar("T")


def engine_options(settings: DatabaseSettings, application_name: str = "saas") -> dict[str, Any]:
    """Keyword arguments for `create_async_engine`, from the seed's pool settings."""
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": settings.db_pool_pre_ping,
        # A failed statement's message must not carry its parameters (emails, token hashes, ...)
        # into logs, readiness bodies or dead-letter headers.
        "hide_parameters": True,
        # asyncpg's arguments as every connection of ours is made with (TLS, the role, the
        # timeouts, no statement cache), and SQLAlchemy's own statement cache off as well.
        "connect_args": {
            **connect_args(settings, application_name),
            "prepared_statement_cache_size": 0,
        },
    }


def create_engine(
    settings: DatabaseSettings, application_name: str = "saas", **overrides: Any
) -> AsyncEngine:
    options = engine_options(settings, application_name)
    engine = create_async_engine(settings.database_url, **{**options, **overrides})
    engine.dialect.do_ping = _ping  # type: ignore[method-assign]
    return engine


class _Begun:
    """The transaction a `Database` session's BEGIN opened, where SQLAlchemy's asyncpg adapter
    keeps the one it would have opened (an asyncpg `Transaction`): it only commits and rolls
    back, and the adapter translates their errors as for its own."""

    __slots__ = ("_driver",)

    def __init__(self, driver: asyncpg.Connection) -> None:
        self._driver = driver

    async def commit(self) -> None:
        await self._driver.execute("COMMIT")

    async def rollback(self) -> None:
        await self._driver.execute("ROLLBACK")


async def _simple(conn: AsyncConnection, raw: Any, sql: str) -> None:
    """A statement without parameters as one simple query (see `_on_driver`)."""
    await _on_driver(conn, raw, sql, raw.driver_connection.execute(sql))


async def _on_driver(conn: AsyncConnection, raw: Any, sql: str, call: Awaitable[T]) -> T:
    """A driver call whose errors are raised as SQLAlchemy raises a statement's (`DBAPIError`
    with the driver's error, SQLSTATE and all), and whose broken connection is invalidated, as
    SQLAlchemy does for its own statements."""
    try:
        return await call
    except Exception as error:
        dbapi = conn.dialect.loaded_dbapi
        try:
            raw.dbapi_connection._handle_exception(error)
        except dbapi.Error as translated:
            lost = conn.dialect.is_disconnect(translated, raw.dbapi_connection, None)
            if lost:
                await conn.invalidate(translated)
            raise DBAPIError.instance(
                sql,
                None,
                translated,
                dbapi.Error,
                hide_parameters=True,
                connection_invalidated=lost,
                dialect=conn.dialect,
            ) from error
        raise


class TenantReader:
    """A tenant's data, read only: what `get_tenant_session(slug, read_only=True)` gives.

    One `READ ONLY` transaction whose search path is the tenant's schema alone, as for the
    session; its statements (SQLAlchemy Core, built once, with bound parameters) are compiled once
    each and go straight to the driver, and rows come back as the driver's records
    (`row["name"]`). SQLAlchemy's session costs a request several times the read itself (a
    20-row page: about 1,000 us of the client's CPU against 350 us this way), which the hot reads
    of a request should not pay. A statement whose parameters or columns SQLAlchemy would convert
    (an `Enum`, say) is refused: read it through the session."""

    __slots__ = ("_conn", "_raw", "_statements")

    def __init__(self, conn: AsyncConnection, raw: Any, statements: _Statements) -> None:
        self._conn, self._raw, self._statements = conn, raw, statements

    async def all(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> list[asyncpg.Record]:
        sql, args = self._statements.bind(statement, params or {})
        driver = self._raw.driver_connection
        return await _on_driver(self._conn, self._raw, sql, driver.fetch(sql, *args))

    async def one_or_none(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> asyncpg.Record | None:
        sql, args = self._statements.bind(statement, params or {})
        driver = self._raw.driver_connection
        return await _on_driver(self._conn, self._raw, sql, driver.fetchrow(sql, *args))


class _Statements:
    """Statements compiled for the driver, once each (they are built once, at import)."""

    def __init__(self, dialect: Dialect, limit: int = 1000) -> None:
        self.dialect = dialect
        self.limit = limit
        self._compiled: dict[int, _Compiled] = {}

    def bind(self, statement: Executable, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        found = self._compiled.get(id(statement))
        if found is None or found.statement is not statement:
            found = self._compile(statement)
        values = {**found.values, **params} if found.values else params
        try:
            return found.sql, [values[name] for name in found.names]
        except KeyError as missing:
            raise ValueError(f"no value given for the parameter {missing}") from None

    def _compile(self, statement: Executable) -> _Compiled:
        compiled = statement.compile(dialect=self.dialect)
        # What SQLAlchemy would convert on the way in or out; the driver would not.
        converted = [name for name, p in compiled._bind_processors.items() if p is not None] + [
            column[0]
            for column in compiled._result_columns
            if column[3].dialect_impl(self.dialect).result_processor(self.dialect, None)
        ]
        if converted:
            raise TypeError(
                f"{', '.join(converted)}: SQLAlchemy converts these values; read this statement "
                "through the session (get_tenant_session without read_only)"
            )
        if len(self._compiled) >= self.limit:  # statements built per call would pile up here
            self._compiled.clear()
        entry = _Compiled(
            statement,
            str(compiled),
            tuple(compiled.positiontup or ()),
            # the values written into the statement (`func.pg_sleep(5)`'s 5, say)
            {n: b.effective_value for n, b in compiled.binds.items() if not b.required},
        )
        self._compiled[id(statement)] = entry
        return entry


@dataclass(frozen=True, slots=True)
class _Compiled:
    statement: Executable  # kept, so that its id is not given to another while it is cached
    sql: str
    names: tuple[str, ...]  # the parameters, in the order of $1, $2, ...
    values: dict[str, Any]


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
    """A process's engine, and its transactions as sessions."""

    def __init__(self, engine: AsyncEngine, *, ssl: Any = False) -> None:
        self.engine = engine
        self._ssl = ssl
        self._statements = _Statements(engine.dialect)

    @classmethod
    def from_settings(
        cls, settings: DatabaseSettings, application_name: str = "saas", **overrides: Any
    ) -> Database:
        engine = create_engine(settings, application_name, **overrides)
        return cls(engine, ssl=ssl_argument(settings.database_ssl_mode))

    async def connect_raw(self) -> asyncpg.Connection:
        """A connection outside the pool, for LISTEN (which must outlive any transaction)."""
        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return await asyncpg.connect(url, ssl=self._ssl)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        async with self._transaction("BEGIN") as session:
            yield session

    @overload
    def get_tenant_session(
        self, slug: str, *, read_only: Literal[False] = False
    ) -> AbstractAsyncContextManager[AsyncSession]: ...

    @overload
    def get_tenant_session(
        self, slug: str, *, read_only: Literal[True]
    ) -> AbstractAsyncContextManager[TenantReader]: ...

    def get_tenant_session(
        self, slug: str, *, read_only: bool = False
    ) -> AbstractAsyncContextManager[AsyncSession] | AbstractAsyncContextManager[TenantReader]:
        """A transaction whose search path is the tenant's schema only: a session, or with
        `read_only` a `TenantReader` (a `READ ONLY` transaction, for a request's hot reads).

        `SET LOCAL` ends with the transaction, so the connection goes back to the pool with its
        path at the server default, also behind PgBouncer in transaction mode.
        """
        schema = quote_schema(schema_for(slug))
        if read_only:
            return self._reader(f"BEGIN READ ONLY; SET LOCAL search_path TO {schema}")
        return self._transaction(f"BEGIN; SET LOCAL search_path TO {schema}")

    @asynccontextmanager
    async def _reader(self, begin: str) -> AsyncIterator[TenantReader]:
        async with self._begun(begin) as (conn, raw):
            driver = raw.driver_connection
            try:
                yield TenantReader(conn, raw, self._statements)
            except BaseException:
                with suppress(Exception):
                    await driver.execute("ROLLBACK")
                raise
            await _simple(conn, raw, "COMMIT")

    @asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[AsyncSession]:
        """A session whose transaction is opened by `begin`, sent as one simple query.

        SQLAlchemy would send BEGIN, then prepare and execute a `SET LOCAL`: three round trips,
        each through a greenlet switch. Here BEGIN (with the tenant's search path) is one, and
        SQLAlchemy is told the transaction exists (`_Begun`), so its commit and rollback, and
        everything hooked to them (`after_commit`, error translation, invalidating a broken
        connection), work as ever, each one simple query.
        """
        async with self._begun(begin) as (conn, raw):
            adapted, driver = raw.dbapi_connection, raw.driver_connection
            adapted._transaction = _Begun(driver)
            try:
                async with AsyncSession(bind=conn, expire_on_commit=False) as session:
                    async with session.begin():
                        yield session
                if adapted._transaction is not None:  # the session never used the connection
                    adapted._transaction = None
                    await _simple(conn, raw, "COMMIT")
            except BaseException:
                if adapted._transaction is not None:
                    adapted._transaction = None
                    with suppress(Exception):
                        await driver.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def _begun(self, begin: str) -> AsyncIterator[tuple[AsyncConnection, Any]]:
        """A pooled connection in the transaction `begin` opened (one simple query), and its
        pool record. A connection still in a transaction at the end (one that could not roll
        back: its statement cancelled half-way, say) is closed, never handed back to the pool."""
        async with self.engine.connect() as conn:
            raw = conn.sync_connection.connection  # checked out: no I/O to get it
            driver = raw.driver_connection  # kept: an invalidated record lets go of it
            await _simple(conn, raw, begin)
            try:
                yield conn, raw
            finally:
                if not driver.is_closed() and driver.is_in_transaction():
                    driver.terminate()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def warm(self, count: int) -> int:
        """Open `count` connections at once and give them back to the pool, which keeps them
        (up to its size). Returns how many opened; one that fails is not retried."""
        opened = await asyncio.gather(
            *(self.engine.connect().start() for _ in range(count)), return_exceptions=True
        )
        connections = [c for c in opened if isinstance(c, AsyncConnection)]
        for connection in connections:
            await connection.close()
        failures = [c for c in opened if isinstance(c, BaseException)]
        if failures and not connections:
            raise failures[0]
        return len(connections)

    async def dispose(self) -> None:
        await self.engine.dispose()

"""A plain asyncpg connection with the arguments every connection of ours is made with, for code
that needs a query or two and not SQLAlchemy (whose import alone takes about a second): the TLS
mode, the role, the timeouts and no statement cache, as `saas.common.db.engine_options` passes
them under `connect_args`: it takes them from here.
"""

from __future__ import annotations

import ssl as ssl_module
from typing import TYPE_CHECKING, Any

from saas.common.settings import DatabaseSettings, DatabaseSSLMode

if TYPE_CHECKING:
    import asyncpg

DRIVER_PREFIX = "postgresql+asyncpg://"


def ssl_argument(mode: DatabaseSSLMode) -> Any:
    if mode is DatabaseSSLMode.DISABLE:
        return False
    if mode in (DatabaseSSLMode.PREFER, DatabaseSSLMode.REQUIRE):
        return mode.value  # asyncpg understands libpq's sslmode names
    context = ssl_module.create_default_context()
    context.check_hostname = mode is DatabaseSSLMode.VERIFY_FULL
    return context


def connect_args(settings: DatabaseSettings, application_name: str = "saas") -> dict[str, Any]:
    """asyncpg's keyword arguments: no statement cache, the TLS mode, and the server settings
    (the timeouts, the role every connection acts as)."""
    server_settings = {
        "application_name": application_name,
        "statement_timeout": _milliseconds(settings.db_statement_timeout),
        "lock_timeout": _milliseconds(settings.db_lock_timeout),
        "idle_in_transaction_session_timeout": _milliseconds(
            settings.db_idle_in_transaction_timeout
        ),
    }
    if settings.database_role:
        server_settings["role"] = settings.database_role
    return {
        "statement_cache_size": 0,
        "ssl": ssl_argument(settings.database_ssl_mode),
        "server_settings": server_settings,
    }


def dsn(database_url: str) -> str:
    """The settings' URL (always `postgresql+asyncpg://...`) as asyncpg takes it."""
    if not database_url.startswith(DRIVER_PREFIX):
        raise ValueError("DATABASE_URL must be a postgresql URL")
    return "postgresql://" + database_url[len(DRIVER_PREFIX) :]


async def connect(
    settings: DatabaseSettings, application_name: str = "saas", **server_settings: str
) -> asyncpg.Connection:
    """One connection as `settings` say (`server_settings` override theirs)."""
    import asyncpg

    arguments = connect_args(settings, application_name)
    arguments["server_settings"].update(server_settings)
    return await asyncpg.connect(dsn(settings.database_url), **arguments)


def _milliseconds(seconds: float) -> str:
    return str(int(seconds * 1000))

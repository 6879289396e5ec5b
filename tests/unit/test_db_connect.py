"""The plain asyncpg connection is made with the arguments the engines pass asyncpg."""

from __future__ import annotations

import ssl

import pytest

from saas.common import db_connect
from saas.common.db import engine_options
from saas.common.settings import DatabaseSettings, DatabaseSSLMode


def comparable(arguments: dict) -> dict:
    found = dict(arguments)
    if isinstance(found["ssl"], ssl.SSLContext):
        context = found["ssl"]
        found["ssl"] = ("context", context.check_hostname, context.verify_mode)
    return found


@pytest.mark.parametrize("mode", list(DatabaseSSLMode))
@pytest.mark.parametrize("role", [None, "tenancy_app"])
def test_the_arguments_are_the_engines(mode, role):
    settings = DatabaseSettings(
        database_ssl_mode=mode, database_role=role, db_statement_timeout=2.5, db_lock_timeout=0
    )
    engines = dict(engine_options(settings, "x")["connect_args"])
    engines.pop("prepared_statement_cache_size")  # SQLAlchemy's own, not asyncpg's
    assert comparable(db_connect.connect_args(settings, "x")) == comparable(engines)


def test_the_url_is_given_to_asyncpg_without_the_driver():
    settings = DatabaseSettings(database_url="postgres://u:p%40ss@db.internal:5433/saas")
    assert db_connect.dsn(settings.database_url) == "postgresql://u:p%40ss@db.internal:5433/saas"
    with pytest.raises(ValueError, match="postgresql URL"):
        db_connect.dsn("mysql://u@h/d")

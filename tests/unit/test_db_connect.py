"""Every connection of ours, plain asyncpg or in an engine's pool, is made with the same arguments."""

from __future__ import annotations

import ssl

import pytest

from saas.common import db_connect
from saas.common.db import engine_options
from saas.common.settings import DatabaseSettings, DatabaseSSLMode


@pytest.mark.parametrize("role", [None, "tenancy_app"])
def test_every_connection_has_no_statement_cache_and_the_settings_bounds(role):
    settings = DatabaseSettings(database_role=role, db_statement_timeout=2.5, db_lock_timeout=0)
    arguments = db_connect.connect_args(settings, "x")
    assert arguments["statement_cache_size"] == 0
    assert arguments["server_settings"] == {
        "application_name": "x",
        "statement_timeout": "2500",
        "lock_timeout": "0",
        "idle_in_transaction_session_timeout": "60000",
        **({"role": role} if role else {}),
    }
    engines = engine_options(settings, "x")["connect_args"]
    assert engines == {**arguments, "ssl": engines["ssl"], "prepared_statement_cache_size": 0}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (DatabaseSSLMode.DISABLE, False),
        (DatabaseSSLMode.PREFER, "prefer"),
        (DatabaseSSLMode.REQUIRE, "require"),
        (DatabaseSSLMode.VERIFY_CA, (False, ssl.CERT_REQUIRED)),
        (DatabaseSSLMode.VERIFY_FULL, (True, ssl.CERT_REQUIRED)),
    ],
)
def test_the_tls_mode_is_given_as_asyncpg_takes_it(mode, expected):
    found = db_connect.ssl_argument(mode)
    if isinstance(found, ssl.SSLContext):
        found = (found.check_hostname, found.verify_mode)
    assert found == expected


def test_the_url_is_given_to_asyncpg_without_the_driver():
    settings = DatabaseSettings(database_url="postgres://u:p%40ss@db.internal:5433/saas")
    assert db_connect.dsn(settings.database_url) == "postgresql://u:p%40ss@db.internal:5433/saas"
    with pytest.raises(ValueError, match="postgresql URL"):
        db_connect.dsn("mysql://u@h/d")

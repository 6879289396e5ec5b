"""Whose fault a consumer's failure is: an outage (hand the event back) or the event's own (count it)."""

from __future__ import annotations

import asyncpg
import nats.errors
import pytest
import sqlalchemy.exc
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_dbapi,
)

from saas.common.events.faults import fault_of, is_outage, sqlstate

DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)


def through_sqlalchemy(error: Exception) -> sqlalchemy.exc.DBAPIError:
    """`error` as a session's caller sees it: adapted by the asyncpg dialect, then wrapped."""
    try:
        try:
            AsyncAdapt_asyncpg_connection._handle_exception_no_connection(DBAPI, error)
        except DBAPI.Error as adapted:
            raise sqlalchemy.exc.DBAPIError.instance(
                "INSERT INTO audit.events ...", {}, adapted, DBAPI.Error
            ) from adapted
    except sqlalchemy.exc.DBAPIError as wrapped:
        return wrapped
    raise AssertionError("the dialect did not adapt the error")


def inside_a_handler(error: Exception) -> Exception:
    """`error` caught by a handler that raised its own exception while handling it."""
    try:
        try:
            raise error
        except Exception:
            raise RuntimeError("could not append to the audit log")  # noqa: B904
    except RuntimeError as outer:
        return outer


OUTAGES = [
    asyncpg.exceptions.ReadOnlySQLTransactionError(
        "cannot execute INSERT in a read-only transaction"
    ),
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.SerializationError("could not serialize access"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.DiskFullError("could not extend file"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection because of crash"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"),
    asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    ),
    asyncpg.exceptions.PostgresIOError("could not read block"),
]
FAULTS = [
    asyncpg.exceptions.InsufficientPrivilegeError("permission denied for table events"),
    asyncpg.exceptions.UndefinedTableError('relation "audit.events" does not exist'),
    asyncpg.exceptions.UndefinedColumnError('column "payload" does not exist'),
    asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
    asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax for type uuid"),
    asyncpg.exceptions.CheckViolationError("new row violates check constraint"),
]


def _name(e: Exception) -> str:
    return f"{type(e).__name__}"


@pytest.mark.parametrize("error", OUTAGES, ids=_name)
@pytest.mark.parametrize(
    "how", [lambda e: e, through_sqlalchemy, inside_a_handler], ids=["raw", "sqlalchemy", "nested"]
)
def test_database_failovers_timeouts_and_overload_are_outages(error, how):
    assert is_outage(how(error))


@pytest.mark.parametrize("error", FAULTS, ids=_name)
@pytest.mark.parametrize(
    "how", [lambda e: e, through_sqlalchemy, inside_a_handler], ids=["raw", "sqlalchemy", "nested"]
)
def test_grants_schema_and_data_errors_are_faults_not_outages(error, how):
    assert not is_outage(how(error))


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("connect call failed"),
        TimeoutError(),
        asyncpg.exceptions.InterfaceError("cannot perform operation: connection is closed"),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        nats.errors.ConnectionClosedError(),
        nats.errors.NoServersError(),
        nats.errors.TimeoutError(),
    ],
    ids=_name,
)
def test_connection_errors_and_timeouts_without_a_sqlstate_are_outages(error):
    assert is_outage(error)
    assert is_outage(inside_a_handler(error))


@pytest.mark.parametrize("error", [ValueError("bad"), KeyError("slug"), TypeError("x")], ids=_name)
def test_a_handler_bug_is_a_fault(error):
    assert not is_outage(error)


def test_a_cause_hidden_with_from_none_is_not_followed():
    try:
        try:
            raise ConnectionRefusedError("connect call failed")
        except ConnectionRefusedError:
            raise ValueError("the tenant does not exist") from None
    except ValueError as error:
        assert not is_outage(error)


def test_the_sqlstate_is_found_through_the_chain():
    assert sqlstate(through_sqlalchemy(FAULTS[0])) == "42501"
    assert sqlstate(inside_a_handler(FAULTS[1])) == "42P01"
    assert sqlstate(ValueError("x")) is None


def test_the_same_sqlstate_is_the_same_fault_whatever_the_message():
    a = fault_of(through_sqlalchemy(asyncpg.exceptions.InsufficientPrivilegeError("for table a")))
    b = fault_of(inside_a_handler(asyncpg.exceptions.InsufficientPrivilegeError("for table b")))
    assert a == b
    assert a.reason == "42501"


def test_messages_differing_only_in_ids_and_numbers_are_the_same_fault():
    a = fault_of(ValueError("cannot apply 0b6f1a9e-2d7c-4a53-9a35-6f5e0c3b9a10 (row 17)"))
    b = fault_of(ValueError("cannot apply 9f0e4b1c-8a6d-4e2f-b1c3-2d4e6f8a0b1c (row 4)"))
    assert a == b
    assert a.reason == "ValueError"
    assert fault_of(KeyError("slug")) != fault_of(KeyError("name"))
    assert fault_of(KeyError("slug")) != fault_of(LookupError("slug"))

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

from saas.common.events.faults import FailureStreak, Fault, fault_of, is_outage, sqlstate

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


def test_the_same_database_error_is_the_same_fault_whatever_the_statement_s_parameters():
    def insert_failing(error: Exception, params: dict) -> Exception:
        wrapped = through_sqlalchemy(error)
        wrapped.params = params  # SQLAlchemy shows them in its own message
        return wrapped

    denied = asyncpg.exceptions.InsufficientPrivilegeError
    a = fault_of(insert_failing(denied("permission denied for table events"), {"t": "acme"}))
    b = fault_of(insert_failing(denied("permission denied for table events"), {"t": "beta"}))
    c = fault_of(insert_failing(denied("permission denied for table chain"), {"t": "acme"}))
    assert a == b
    assert a.reason == c.reason == "42501"
    assert a != c


def test_messages_differing_only_in_ids_and_numbers_are_the_same_fault():
    a = fault_of(ValueError("cannot apply 0b6f1a9e-2d7c-4a53-9a35-6f5e0c3b9a10 (row 17)"))
    b = fault_of(ValueError("cannot apply 9f0e4b1c-8a6d-4e2f-b1c3-2d4e6f8a0b1c (row 4)"))
    assert a == b
    assert a.reason == "ValueError"
    assert fault_of(KeyError("slug")) != fault_of(KeyError("name"))
    assert fault_of(KeyError("slug")) != fault_of(LookupError("slug"))


# -- systemic faults: every event failing the same way ----------------------------------------
DENIED = Fault("42501", "42501: permission denied for table events")
MISSING = Fault("42P01", 'relation "audit.events" does not exist')
BUG = Fault("KeyError", "KeyError: 'slug'")


def test_distinct_events_failing_the_same_way_in_a_row_are_systemic():
    streak = FailureStreak(threshold=3)
    assert [streak.failed(e, DENIED) for e in ("a", "b", "c", "d")] == [False, False, True, True]
    assert streak.paused_by == DENIED
    assert streak.events[:3] == ["a", "b", "c"]


def test_one_event_failing_again_and_again_is_never_systemic():
    streak = FailureStreak(threshold=3)
    assert not any(streak.failed("poison", BUG) for _ in range(10))
    assert streak.paused_by is None


def test_a_poison_event_among_good_ones_is_never_systemic():
    streak = FailureStreak(threshold=3)
    for poison in ("p1", "p2", "p3", "p4"):
        assert not streak.failed(poison, BUG)
        assert streak.succeeded() is None


def test_different_faults_in_a_row_are_not_one_streak():
    streak = FailureStreak(threshold=3)
    assert not any(streak.failed(e, f) for e, f in [("a", DENIED), ("b", MISSING), ("c", DENIED)])


def test_a_fault_seen_with_events_applied_around_it_is_never_systemic():
    streak = FailureStreak(threshold=3)
    streak.failed("p1", BUG)
    streak.succeeded()  # good events went through between the bad ones
    # The bad ones come back together when their redelivery delays end: still theirs to count.
    assert not any(streak.failed(e, BUG) for e in ("p1", "p2", "p3", "p4"))


def test_an_applied_event_ends_the_pause_and_a_systemic_fault_stays_recognisable():
    streak = FailureStreak(threshold=2)
    streak.failed("a", DENIED)
    assert streak.failed("b", DENIED)
    assert streak.succeeded() == DENIED
    assert streak.paused_by is None
    # The grant is revoked again later: systemic again, not taken for a bug of some events.
    streak.failed("c", DENIED)
    assert streak.failed("d", DENIED)


def test_while_paused_another_fault_is_the_event_s_own():
    streak = FailureStreak(threshold=2)
    streak.failed("a", DENIED)
    streak.failed("b", DENIED)
    assert not streak.failed("c", BUG)
    assert streak.failed("d", DENIED)
    assert streak.paused_by == DENIED

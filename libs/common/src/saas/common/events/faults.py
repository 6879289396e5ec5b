"""Whose fault is a consumer's failure: an outage, or the event's own?

An outage (the database or NATS away, failing over to a read-only replica, overloaded, or
cancelling work for a timeout, a deadlock or a shutdown) says nothing about the event: the
consumer hands it back and pauses, and the attempt never counts towards dead-lettering. Anything
else is a failure of the handler on this event, counted.

PostgreSQL names its errors by SQLSTATE; whoever wraps them (SQLAlchemy, the asyncpg dialect, a
handler raising its own exception while handling one) keeps the original in the exception's
chain, so the classification walks the whole chain, not one level of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import nats.errors
import sqlalchemy.exc

# SQLSTATE classes and codes that describe the database's state, not the statement's.
OUTAGE_SQLSTATE_CLASSES = frozenset(
    {
        "08",  # connection exception
        "40",  # transaction rollback: serialization failure, deadlock
        "53",  # insufficient resources: disk full, out of memory, too many connections
        "57",  # operator intervention: statement timeout, admin or crash shutdown, starting up
        "58",  # system error: I/O
    }
)
OUTAGE_SQLSTATES = frozenset(
    {
        "25006",  # read-only transaction: the primary failed over to a replica
        "55P03",  # lock not available: a lock timeout
    }
)
# Without a SQLSTATE, these types mean the connection itself failed or timed out.
OUTAGE_TYPES = (
    OSError,  # ConnectionError and friends
    TimeoutError,  # asyncio's and nats-py's timeouts too
    asyncpg.exceptions.InterfaceError,  # "connection is closed" and the like
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # no connection free in the pool
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
)


def is_outage(exc: BaseException) -> bool:
    """An outage of the database or NATS rather than a fault of the event or the handler."""
    code = sqlstate(exc)
    if code is not None:
        return code[:2] in OUTAGE_SQLSTATE_CLASSES or code in OUTAGE_SQLSTATES
    return any(
        isinstance(e, OUTAGE_TYPES)
        or (isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated)
        for e in _chain(exc)
    )


def sqlstate(exc: BaseException) -> str | None:
    """The first SQLSTATE in the exception's chain (asyncpg's and the dialect's `sqlstate`)."""
    link = _database_error(exc)
    return None if link is None else link.sqlstate  # type: ignore[attr-defined]


def _database_error(exc: BaseException) -> BaseException | None:
    for e in _chain(exc):
        code = getattr(e, "sqlstate", None)
        if isinstance(code, str) and len(code) == 5:
            return e
    return None


@dataclass(frozen=True)
class Fault:
    """How a handler failed, to tell when distinct events keep failing the same way."""

    reason: str  # a SQLSTATE or an exception type: few values, fit for a metric label
    signature: str  # the reason and the shape of its message


def fault_of(exc: BaseException) -> Fault:
    # The database's own message, not SQLAlchemy's, which adds the statement's parameters.
    link = _database_error(exc)
    reason = type(exc).__name__ if link is None else link.sqlstate  # type: ignore[attr-defined]
    return Fault(reason, f"{reason}: {_shape(str(link or exc))}")


# Ids and numbers differ from event to event; the rest of a message says what went wrong.
_VARYING = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|\d+"
)


def _shape(message: str) -> str:
    return _VARYING.sub("#", message)[:200]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps: SQLAlchemy's `orig`, then the cause or context Python
    would print (`raise ... from None` hides the context)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        linked = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
        todo.extend((linked, getattr(e, "orig", None)))  # `orig` first: popped last-in


class FailureStreak:
    """Tells a systemic fault (a revoked grant, a migration that did not run: every event fails
    the same way) from events failing on their own.

    `threshold` distinct events in a row failing the same way, with none applied in between,
    make the fault systemic: the consumer pauses until an event is applied again. A fault that
    has been seen before with events applied around it is a bug some events hit, never
    systemic: dead-lettering is for those, also when they come back one after another.
    """

    def __init__(self, threshold: int, memory: int = 100) -> None:
        self.threshold = threshold
        self.paused_by: Fault | None = None
        self._signature: str | None = None
        self._events: list[str] = []  # distinct, oldest first
        self._some_events_only: dict[str, None] = {}  # ordered, bounded by `memory`
        self._memory = memory

    @property
    def events(self) -> list[str]:
        """The events of the current streak."""
        return list(self._events)

    def failed(self, event_id: str, fault: Fault) -> bool:
        """Whether this failure is systemic, and so not the event's to count."""
        if self.paused_by is not None and fault.signature == self.paused_by.signature:
            return True
        if fault.signature != self._signature:
            self._signature, self._events = fault.signature, []
        if event_id not in self._events:
            self._events.append(event_id)
        if len(self._events) >= self.threshold and fault.signature not in self._some_events_only:
            self.paused_by = fault
            return True
        return False

    def succeeded(self) -> Fault | None:
        """Events were applied: the streak, and a pause, are over. Returns what had paused."""
        paused_by = self.paused_by
        if paused_by is None and self._signature is not None:
            self._some_events_only[self._signature] = None
            if len(self._some_events_only) > self._memory:
                del self._some_events_only[next(iter(self._some_events_only))]
        self.paused_by, self._signature, self._events = None, None, []
        return paused_by

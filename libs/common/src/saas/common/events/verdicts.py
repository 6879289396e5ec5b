"""How the outbox relay judges each row of a batch it published: sent, its own fault, or an outage.

- A row fails **on its own** when its message is refused: an error ack about the message
  (JetStream's 4xx: over the stream's maximum size, the subject belongs to another stream), a
  payload over the connection's maximum or a subject nobody can publish to (refused before
  sending). Its attempt is counted; after `OUTBOX_MAX_ATTEMPTS` it is quarantined.
- An **outage** is nobody's fault and counts against no row: the connection is lost, or the
  server says the trouble is the server's (5xx error acks: storage, leadership, resources, and
  the account's limits).
- **No responders** and **timeouts** could be either: no stream covers the subject, or the
  stream is missing, slow or electing a leader. They count against a row only while the stream
  is shown to work (the connection held through the batch, and JetStream answered another row
  of it or a probe). A timeout counts only when JetStream answered a later row of the batch: it
  answers in the order it stores, so it took that row and never this one. Timeouts at the end
  of a batch (all of it, at worst) met a slow or lost server: an outage.

Rows are published in order and each tenant's are marked in order: once one of a tenant's rows
fails, its later rows in the batch are not marked sent, even if acknowledged. They are published
again after it, and JetStream's duplicate window drops the repeats.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from enum import StrEnum

import nats.errors
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from saas.common.bus.jetstream import BAD_SUBJECT

MAX_ERROR_LENGTH = 1000

# Error acks JetStream sends with a 4xx code although the trouble is not the message's.
ACCOUNT_LIMITS = {10002}  # resource limits exceeded for account


class Verdict(StrEnum):
    SENT = "sent"
    FAULT = "fault"  # the row's own: its attempt is counted
    OUTAGE = "outage"  # nobody's: counted against no row


class Unpublishable(Exception):
    """The relay refused to send a row: sending it could never succeed."""


# Refused before sending (by the relay or the client): about the row, not about the server.
REFUSED_BEFORE_SENDING = (
    Unpublishable,
    nats.errors.MaxPayloadError,
    nats.errors.BadSubjectError,
    nats.errors.BadHeaderError,
)


def refusal(subject: str, body: bytes, *, max_payload: int) -> str | None:
    """Why a row can never be published on this connection, or None."""
    if len(body) > max_payload:
        return f"payload of {len(body)} bytes is over the connection's maximum of {max_payload}"
    if _bad_subject(subject):
        return f"{subject!r} is not a subject one can publish to"
    return None


@functools.lru_cache(maxsize=1024)  # a batch holds a few event types, over and over
def _bad_subject(subject: str) -> bool:
    return BAD_SUBJECT.search(subject) is not None


def _unclear(outcome: object) -> bool:
    return isinstance(outcome, NoStreamResponseError | TimeoutError)


def needs_evidence(outcomes: Sequence[object]) -> bool:
    """Whether some row's failure counts only if the stream is shown to work."""
    return any(_unclear(o) for o in outcomes)


def stream_answered(outcomes: Sequence[object]) -> bool:
    """Whether JetStream answered some row of the batch about that row: an ack or an error ack."""
    return any(_answered_by_stream(o) for o in outcomes)


def _answered_by_stream(outcome: object) -> bool:
    return isinstance(outcome, PubAck) or _refused_by_stream(outcome)


def _refused_by_stream(outcome: object) -> bool:
    return (
        isinstance(outcome, APIError)
        and (outcome.code or 500) < 500
        and outcome.err_code not in ACCOUNT_LIMITS
    )


def judge(outcomes: Sequence[object], *, stream_works: bool) -> list[Verdict]:
    """Each row's verdict, from its outcome (a `PubAck` or an exception), in batch order."""
    answered = [i for i, o in enumerate(outcomes) if _answered_by_stream(o)]
    last_answer = answered[-1] if answered else -1
    return [
        _verdict(o, stream_works and (i < last_answer or not isinstance(o, TimeoutError)))
        for i, o in enumerate(outcomes)
    ]


def _verdict(outcome: object, blame_unclear: bool) -> Verdict:
    if isinstance(outcome, PubAck):
        return Verdict.SENT
    if _unclear(outcome):
        return Verdict.FAULT if blame_unclear else Verdict.OUTAGE
    if _refused_by_stream(outcome) or isinstance(outcome, REFUSED_BEFORE_SENDING):
        return Verdict.FAULT
    return Verdict.OUTAGE  # a lost connection, a server condition, anything unforeseen


def marked_sent(tenants: Sequence[str], verdicts: Sequence[Verdict]) -> list[bool]:
    """Which rows to mark sent: acknowledged, and no earlier row of their tenant in the batch failed.

    Rows are in claim order (oldest first); marking a later row while an earlier one of the same
    tenant is still to be published would let the outbox forget the order it owes consumers."""
    failed: set[str] = set()
    marks = []
    for tenant, verdict in zip(tenants, verdicts, strict=True):
        marks.append(verdict is Verdict.SENT and tenant not in failed)
        if verdict is not Verdict.SENT:
            failed.add(tenant)
    return marks


def describe(outcome: object, subject: str) -> str:
    """Why a row failed, in words an operator can act on (kept in the row's `last_error`)."""
    if isinstance(outcome, NoStreamResponseError):
        text = f"no responders: no stream takes subject {subject!r}"
    elif isinstance(outcome, TimeoutError):
        text = f"timed out waiting for JetStream to acknowledge {subject!r}"
    elif isinstance(outcome, APIError):
        text = (
            f"JetStream refused it: {outcome.description} "
            f"(code {outcome.code}, err_code {outcome.err_code})"
        )
    elif isinstance(outcome, Unpublishable):
        text = str(outcome)
    else:
        text = f"{type(outcome).__name__}: {outcome}"
    return text[:MAX_ERROR_LENGTH]

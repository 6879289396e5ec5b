"""Operating the dead-letter stream: see what a consumer gave up on, and replay it once fixed.

Replaying publishes the original event again to its original subject (with a new message id, so
the server's dedupe does not drop it) and deletes it from `DEADLETTER`. Every consumer of that
subject receives it again; the ones that had applied it drop it by its processed id, the one
that had given up applies it now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from saas.common.events.consumer import (
    HEADER_DL_CONSUMER,
    HEADER_DL_DELIVERIES,
    HEADER_DL_DETAIL,
    HEADER_DL_FAILURES,
    HEADER_DL_REASON,
    HEADER_DL_SEQUENCE,
    HEADER_DL_SUBJECT,
)
from saas.common.events.stream import DEADLETTER_PREFIX, DEADLETTER_STREAM


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    consumer: str
    reason: str
    detail: str
    subject: str
    original_seq: str
    deliveries: str  # outages' redeliveries included
    failures: str  # the handler's real failures, for those it gave up on
    data: bytes


def _subject(consumer: str | None) -> str:
    return f"{DEADLETTER_PREFIX}.{consumer}" if consumer else f"{DEADLETTER_PREFIX}.>"


async def dead_letters(
    js: JetStreamContext, consumer: str | None = None
) -> AsyncIterator[DeadLetter]:
    """Every dead letter (of one consumer, or of all), oldest first."""
    seq = 1
    while True:
        try:
            raw = await js.get_msg(
                DEADLETTER_STREAM, seq=seq, subject=_subject(consumer), next=True
            )
        except NotFoundError:
            return
        h = raw.headers or {}
        yield DeadLetter(
            seq=raw.seq,
            consumer=h.get(HEADER_DL_CONSUMER, ""),
            reason=h.get(HEADER_DL_REASON, ""),
            detail=h.get(HEADER_DL_DETAIL, ""),
            subject=h.get(HEADER_DL_SUBJECT, ""),
            original_seq=h.get(HEADER_DL_SEQUENCE, ""),
            deliveries=h.get(HEADER_DL_DELIVERIES, ""),
            failures=h.get(HEADER_DL_FAILURES, ""),
            data=raw.data or b"",
        )
        seq = raw.seq + 1


async def replay(js: JetStreamContext, consumer: str, seqs: set[int] | None = None) -> list[int]:
    """Republish a consumer's dead letters (all, or those in `seqs`); returns the sequences replayed."""
    done: list[int] = []
    async for letter in dead_letters(js, consumer):
        if seqs is not None and letter.seq not in seqs:
            continue
        if not letter.subject:
            continue  # not one of ours: leave it for a person
        await js.publish(
            letter.subject,
            letter.data,
            headers={"Nats-Msg-Id": f"replay:{DEADLETTER_STREAM}:{letter.seq}"},
        )
        await js.delete_msg(DEADLETTER_STREAM, letter.seq)
        done.append(letter.seq)
    return done

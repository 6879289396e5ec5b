"""The hash chain: pure functions, no I/O.

Each tenant's entries form a chain: `hash = SHA-256(prev_hash || canonical entry)`, where the
canonical entry is the entry's fields as JSON with sorted keys and no spaces, and the first
entry's `prev_hash` is 64 zeros. Editing, removing or reordering any entry breaks every link
after it, and `first_broken_link` names the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = "0" * 64
CHAINED_FIELDS = (
    "event_id",
    "tenant_key",
    "tenant_seq",
    "type",
    "source",
    "subject",
    "actor_type",
    "actor_id",
    "occurred_at",
    "correlation_id",
    "data_version",
    "payload",
)


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return (
        str(value)
        if not isinstance(value, (str, int, float, bool, dict, list, type(None)))
        else value
    )


def canonical(entry: Mapping[str, Any]) -> bytes:
    return orjson.dumps({f: _normal(entry[f]) for f in CHAINED_FIELDS}, option=orjson.OPT_SORT_KEYS)


def link_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(entry)).hexdigest()


@dataclass(frozen=True)
class BrokenLink:
    tenant_seq: int
    event_id: str
    reason: str


def first_broken_link(
    entries: Iterable[Mapping[str, Any]], *, prev_hash: str = GENESIS, expected_seq: int = 1
) -> tuple[BrokenLink | None, str, int]:
    """Walk entries in `tenant_seq` order; return the first broken link (or None), and where the
    walk ended (last hash, next expected sequence) so a caller can continue page by page."""
    for entry in entries:
        seq, event_id = entry["tenant_seq"], str(entry["event_id"])
        if seq != expected_seq:
            return (
                BrokenLink(
                    expected_seq, event_id, f"sequence gap: expected {expected_seq}, found {seq}"
                ),
                prev_hash,
                seq,
            )
        if entry["prev_hash"] != prev_hash:
            return (
                BrokenLink(seq, event_id, "prev_hash does not match the previous entry's hash"),
                prev_hash,
                seq,
            )
        if link_hash(prev_hash, entry) != entry["hash"]:
            return (
                BrokenLink(seq, event_id, "hash does not match the entry's contents"),
                prev_hash,
                seq,
            )
        prev_hash, expected_seq = entry["hash"], seq + 1
    return None, prev_hash, expected_seq

"""The hash chain: pure functions, no I/O.

Each tenant's entries form a chain: `hash = SHA-256(prev_hash || entry)`, where `entry` is the
canonical form of the entry's fields (JSON with sorted keys and no spaces), stored as those exact
bytes beside the queryable columns, and the first entry's `prev_hash` is 64 zeros. Editing,
removing or reordering any entry breaks every link after it; a column edited behind the stored
bytes no longer says what they say. `first_broken_link` names the first entry where either shows.

A chain alone cannot show what was cut from its end, or a chain rewritten and rehashed from some
entry on. Checkpoints can: each records a chain's length and head hash at some moment, kept
outside the database. Every checkpoint must still hold (the entry at its count has its hash), and
the chain must be at least as long as the longest (`missing_tail`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


_AS_IS = frozenset({str, int, float, bool, dict, list, type(None)})


def _normal(value: Any) -> Any:
    kind = type(value)
    if kind in _AS_IS:  # nearly every field: checked first, by exact type
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, (str, int, float, dict, list)):  # subclasses serialise as their base
        return value
    return str(value)


def canonical(entry: Mapping[str, Any]) -> bytes:
    return orjson.dumps({f: _normal(entry[f]) for f in CHAINED_FIELDS}, option=orjson.OPT_SORT_KEYS)


def canonical_new(entry: Mapping[str, Any]) -> bytes:
    """`canonical` of an entry fresh from an event (exactly the chained fields; a UUID, which orjson
    writes as `str` does; an aware time): the same bytes with less Python, for the write path.

    orjson writes a UTC time as `isoformat(timespec="microseconds")` does, except that it leaves
    zero microseconds out: only those, and times in other offsets, are formatted here (moving a
    time to UTC took more than half of this function's time)."""
    occurred = entry["occurred_at"]
    if occurred.microsecond and occurred.utcoffset() == _UTC_OFFSET:
        return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    fields = dict(entry)
    fields["occurred_at"] = occurred.astimezone(UTC).isoformat(timespec="microseconds")
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


_UTC_OFFSET = timedelta(0)


def link_hash(prev_hash: str, entry: bytes) -> str:
    """The hash of an entry's stored canonical bytes, chained to the previous entry's hash."""
    return hashlib.sha256(prev_hash.encode() + entry).hexdigest()


def columns_unlike_entry(row: Mapping[str, Any]) -> list[str]:
    """The chained columns of a stored row that no longer say what its stored bytes say."""
    stored = orjson.loads(bytes(row["entry"]))
    return [f for f in CHAINED_FIELDS if f not in stored or stored[f] != _normal(row[f])] + sorted(
        set(stored) - set(CHAINED_FIELDS)
    )


@dataclass(frozen=True)
class BrokenLink:
    tenant_seq: int
    event_id: str  # empty when the entry is missing
    reason: str


@dataclass(frozen=True)
class Checkpoint:
    """A chain's length and the hash of its last entry, at the time it was published."""

    count: int
    hash: str


def index_checkpoints(checkpoints: Iterable[Checkpoint]) -> dict[int, frozenset[str]]:
    """Hashes recorded for each chain length (more than one only if someone forged one)."""
    index: dict[int, set[str]] = defaultdict(set)
    for checkpoint in checkpoints:
        index[checkpoint.count].add(checkpoint.hash)
    return {count: frozenset(hashes) for count, hashes in index.items()}


def missing_tail(length: int, checkpoints: Mapping[int, frozenset[str]]) -> BrokenLink | None:
    """The entries a checkpoint proves existed beyond the chain's end, if any."""
    recorded = max(checkpoints, default=0)
    if recorded <= length:
        return None
    what = (
        "the whole chain is missing"
        if length == 0
        else f"entries {length + 1} to {recorded} are missing"
    )
    return BrokenLink(length + 1, "", f"{what}: a checkpoint recorded {recorded} entries")


def first_broken_link(
    entries: Iterable[Mapping[str, Any]],
    *,
    prev_hash: str = GENESIS,
    expected_seq: int = 1,
    checkpoints: Mapping[int, frozenset[str]] | None = None,
) -> tuple[BrokenLink | None, str, int]:
    """Walk entries in `tenant_seq` order; return the first broken link (or None), and where the
    walk ended (last hash, next expected sequence) so a caller can continue page by page.
    `checkpoints` (from `index_checkpoints`) are checked at the entries they name."""
    checkpoints = checkpoints or {}
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
        if link_hash(prev_hash, bytes(entry["entry"])) != entry["hash"]:
            return (
                BrokenLink(seq, event_id, "hash does not match the entry's stored contents"),
                prev_hash,
                seq,
            )
        if unlike := columns_unlike_entry(entry):
            reason = f"columns {', '.join(unlike)} do not match the entry's stored contents"
            return BrokenLink(seq, event_id, reason), prev_hash, seq
        if seq in checkpoints and checkpoints[seq] != {entry["hash"]}:
            reason = (
                f"hash differs from the checkpoint of entry {seq}: "
                "the chain was rewritten at or before this entry"
            )
            return BrokenLink(seq, event_id, reason), prev_hash, seq
        prev_hash, expected_seq = entry["hash"], seq + 1
    return None, prev_hash, expected_seq

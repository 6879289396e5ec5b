import uuid
from datetime import UTC, datetime

import pytest

from saas.audit.chain import (
    GENESIS,
    Checkpoint,
    canonical,
    columns_unlike_entry,
    first_broken_link,
    index_checkpoints,
    link_hash,
    missing_tail,
)


def entry(seq: int, **changes):
    base = {
        "event_id": uuid.UUID(int=seq),
        "tenant_key": "t",
        "tenant_seq": seq,
        "type": "project.created",
        "source": "s",
        "subject": None,
        "actor_type": "user",
        "actor_id": "u",
        "correlation_id": None,
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
        "data_version": 1,
        "payload": {"b": 1, "a": [1, 2]},
    }
    return base | changes


def chain(n: int):
    prev, out = GENESIS, []
    for seq in range(1, n + 1):
        e = entry(seq)
        h = link_hash(prev, canonical(e))
        out.append({**e, "entry": canonical(e), "prev_hash": prev, "hash": h})
        prev = h
    return out


def test_canonical_form_ignores_key_order_and_non_chained_fields():
    a = entry(1)
    b = dict(reversed(list(entry(1, payload={"a": [1, 2], "b": 1}).items())))
    assert canonical(a) == canonical(b)
    assert canonical(a) == canonical({**a, "recorded_at": "whenever", "hash": "x"})


def test_every_field_is_covered_by_the_hash():
    base = entry(1)
    for field, value in [
        ("actor_id", "v"),
        ("payload", {"b": 2}),
        ("type", "x"),
        ("tenant_seq", 2),
        ("occurred_at", datetime(2026, 1, 2, tzinfo=UTC)),
        ("correlation_id", "c"),
    ]:
        changed = canonical({**base, field: value})
        assert link_hash(GENESIS, canonical(base)) != link_hash(GENESIS, changed), field


def test_intact_chain_has_no_broken_link():
    broken, last, next_seq = first_broken_link(chain(5))
    assert broken is None and next_seq == 6 and last == chain(5)[-1]["hash"]


def test_chain_can_be_walked_page_by_page():
    rows = chain(6)
    broken, last, next_seq = first_broken_link(rows[:3])
    assert broken is None
    assert first_broken_link(rows[3:], prev_hash=last, expected_seq=next_seq)[0] is None


def test_reordered_entries_are_found():
    rows = chain(4)
    rows[1], rows[2] = rows[2], rows[1]
    assert first_broken_link(rows)[0].tenant_seq == 2


def test_columns_that_disagree_with_the_stored_bytes_are_named():
    row = chain(1)[0]
    assert columns_unlike_entry(row) == []
    assert columns_unlike_entry({**row, "actor_id": "mallory", "payload": {}}) == [
        "actor_id",
        "payload",
    ]


def test_a_column_edited_behind_intact_bytes_breaks_the_chain_there():
    rows = chain(4)
    rows[2] = {**rows[2], "occurred_at": datetime(2020, 1, 1, tzinfo=UTC)}
    broken = first_broken_link(rows)[0]
    assert broken.tenant_seq == 3 and "occurred_at" in broken.reason


def test_stored_bytes_rewritten_without_their_hash_break_the_chain_there():
    rows = chain(3)
    rows[1] = {**rows[1], "entry": rows[1]["entry"].replace(b'"u"', b'"m"')}
    broken = first_broken_link(rows)[0]
    assert broken.tenant_seq == 2 and "hash" in broken.reason


def checkpoints_of(rows, *counts):
    return index_checkpoints(Checkpoint(n, rows[n - 1]["hash"]) for n in counts)


def test_a_chain_that_holds_every_checkpoint_is_intact():
    rows = chain(6)
    assert first_broken_link(rows, checkpoints=checkpoints_of(rows, 2, 6))[0] is None
    assert missing_tail(6, checkpoints_of(rows, 2, 6)) is None


def test_a_recomputed_chain_breaks_at_the_first_checkpoint_it_no_longer_holds():
    original = chain(6)
    rewritten = chain(6)  # the same entries...
    prev = rewritten[2]["prev_hash"]
    for row in rewritten[2:]:  # ...rewritten from entry 3 on, every hash recomputed
        row["payload"] = {"forged": True}
        row["entry"] = canonical(row)
        row["prev_hash"], row["hash"] = prev, link_hash(prev, row["entry"])
        prev = row["hash"]
    assert first_broken_link(rewritten)[0] is None  # consistent in itself
    broken = first_broken_link(rewritten, checkpoints=checkpoints_of(original, 2, 4, 6))[0]
    assert broken.tenant_seq == 4 and "checkpoint" in broken.reason


def test_entries_a_checkpoint_proves_existed_are_reported_missing():
    rows = chain(6)
    cut = missing_tail(4, checkpoints_of(rows, 3, 6))
    assert cut.tenant_seq == 5 and "5 to 6 are missing" in cut.reason and cut.event_id == ""
    gone = missing_tail(0, checkpoints_of(rows, 6))
    assert gone.tenant_seq == 1 and "whole chain" in gone.reason


@pytest.mark.parametrize("microsecond", [0, 1, 999_999])
@pytest.mark.parametrize("subject", [None, "acme", "ünïcode ☃"])
def test_the_write_path_canonical_form_is_the_same_bytes_as_verifys(microsecond, subject):
    import uuid
    from datetime import UTC, datetime, timedelta, timezone

    from saas.audit.chain import canonical, canonical_new

    entry = {
        "event_id": uuid.uuid4(),
        "tenant_key": "t-1",
        "tenant_seq": 7,
        "type": "membership.added",
        "source": "saas/identity",
        "subject": subject,
        "actor_type": "user",
        "actor_id": "u-1",
        "occurred_at": datetime(
            2026, 11, 29, 12, 0, 0, microsecond, tzinfo=timezone(timedelta(hours=2))
        ),
        "correlation_id": None,
        "data_version": 1,
        "payload": {"b": [1, 2.5, None], "a": {"z": "é", "y": True}},
    }
    assert canonical_new(entry) == canonical(entry)
    assert canonical_new(
        {**entry, "occurred_at": entry["occurred_at"].astimezone(UTC)}
    ) == canonical(entry)


@pytest.mark.parametrize(
    "time", ["2026-11-29T12:00:00Z", "2026-11-29T12:00:00.000001Z", "2026-11-29T14:00:00.5+02:00"]
)
def test_the_write_path_canonical_form_of_a_time_read_from_the_bus_is_verifys(time):
    import orjson

    from saas.audit.chain import canonical, canonical_new
    from saas.audit.store import entry_from_event
    from saas.common.events import Actor, new_event, parse_event
    from saas.common.events.catalogue import MembershipAdded

    sent = new_event(
        MembershipAdded(tenant_id="t-1", user_id="u-1", role="member"),
        source="saas/identity",
        actor=Actor.user("u-1"),
        tenant_id="t-1",
    )
    received = parse_event(orjson.dumps({**orjson.loads(sent.to_bytes()), "time": time}))
    entry = entry_from_event(received, 1)
    assert canonical_new(entry) == canonical(entry)

"""Each entry keeps the exact bytes its hash covers, and the table refuses malformed entries.

`entry` holds the canonical JSON that was hashed (`hash = SHA-256(prev_hash || entry)`), so
verification recomputes hashes from what was stored rather than from columns read back through
type conversions, and can tell when a queryable column no longer says what the bytes say.
Existing rows are backfilled here, as the owner, with the append-only trigger off for this step
only; then the column becomes NOT NULL. The constraints refuse what verification used to skip
or trip over: a sequence below 1, hashes that are not 64 lowercase hex digits, and a first entry
that does not follow the genesis hash.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
HEX = "0123456789abcdef"
# The canonical form as the audit service wrote it when this revision was made: frozen here,
# because a migration is history and never imports a service.
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
CONSTRAINTS = {
    "ck_audit_events_tenant_seq": "tenant_seq >= 1",
    # 64 lowercase hex digits, checked without a regular expression: one here cost the audit
    # log a third of its write rate (translate() drops the hex digits; nothing may be left).
    "ck_audit_events_hash_hex": f"length(hash) = 64 AND translate(hash, '{HEX}', '') = ''",
    "ck_audit_events_prev_hash_hex": (
        f"length(prev_hash) = 64 AND translate(prev_hash, '{HEX}', '') = ''"
    ),
    "ck_audit_events_first_entry_follows_genesis": f"tenant_seq <> 1 OR prev_hash = '{GENESIS}'",
}
BATCH = 1000


def _canonical_v1(row: dict[str, Any]) -> bytes:
    def normal(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat(timespec="microseconds")
        if isinstance(value, (str, int, float, bool, dict, list, type(None))):
            return value
        return str(value)

    return orjson.dumps({f: normal(row[f]) for f in CHAINED_FIELDS}, option=orjson.OPT_SORT_KEYS)


def _backfill() -> None:
    conn = op.get_bind()
    columns = ", ".join(f for f in CHAINED_FIELDS if f != "payload")
    select = sa.text(
        f"SELECT id, {columns}, payload::text AS payload_json FROM audit.events "
        "WHERE entry IS NULL ORDER BY id LIMIT :n"
    )
    update = sa.text("UPDATE audit.events SET entry = :entry WHERE id = :id")
    while rows := conn.execute(select, {"n": BATCH}).mappings().all():
        conn.execute(
            update,
            [
                {
                    "id": r["id"],
                    "entry": _canonical_v1({**r, "payload": orjson.loads(r["payload_json"])}),
                }
                for r in rows
            ],
        )


def upgrade() -> None:
    op.add_column("events", sa.Column("entry", sa.LargeBinary), schema="audit")
    op.execute("ALTER TABLE audit.events DISABLE TRIGGER events_refuse_update_delete")
    _backfill()
    op.execute("ALTER TABLE audit.events ENABLE TRIGGER events_refuse_update_delete")
    op.alter_column("events", "entry", nullable=False, schema="audit")
    for name, condition in CONSTRAINTS.items():
        op.create_check_constraint(name, "events", condition, schema="audit")


def downgrade() -> None:
    for name in CONSTRAINTS:
        op.drop_constraint(name, "events", schema="audit", type_="check")
    op.drop_column("events", "entry", schema="audit")

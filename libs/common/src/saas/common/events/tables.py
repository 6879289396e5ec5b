"""The outbox, processed-events and consumer-failures tables every owning schema has.

Runtime code uses these `Table` objects; migrations call the versioned `create_*_v1` and
`upgrade_*_v2` functions, which stay as they are once released (a later change gets the next
version and a new migration). `outbox_table` is always the latest version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from saas.common.tenant_names import quote_schema

OUTBOX = "outbox"
PROCESSED = "processed_events"
CONSUMER_FAILURES = "consumer_failures"


def outbox_table(schema: str, metadata: sa.MetaData | None = None) -> sa.Table:
    return sa.Table(
        OUTBOX,
        metadata or sa.MetaData(),
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("tenant_key", sa.String(100), nullable=False, server_default=""),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("quarantined_at", sa.DateTime(timezone=True)),
        schema=schema,
    )


def create_outbox_v1(op: Operations, schema: str) -> None:
    op.create_table(
        OUTBOX,
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("tenant_key", sa.String(100), nullable=False, server_default=""),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        schema=schema,
    )
    # The relay only ever scans unsent rows, in order: keep that index small.
    op.create_index(
        "ix_outbox_unsent",
        OUTBOX,
        ["seq"],
        schema=schema,
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.create_index("ix_outbox_sent_at", OUTBOX, ["sent_at"], schema=schema)


def upgrade_outbox_v2(op: Operations, schema: str) -> None:
    """Quarantine: a row that keeps failing for a reason of its own is counted (`attempts`,
    `last_error`), then set aside (`quarantined_at`), kept and never pruned, so the rest go on."""
    op.add_column(
        OUTBOX,
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        schema=schema,
    )
    op.add_column(OUTBOX, sa.Column("last_error", sa.Text), schema=schema)
    op.add_column(OUTBOX, sa.Column("quarantined_at", sa.DateTime(timezone=True)), schema=schema)
    # The relay's scan skips quarantined rows; operators' listing finds them through their own index.
    op.drop_index("ix_outbox_unsent", OUTBOX, schema=schema)
    op.create_index(
        "ix_outbox_unsent",
        OUTBOX,
        ["seq"],
        schema=schema,
        postgresql_where=sa.text("sent_at IS NULL AND quarantined_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_quarantined",
        OUTBOX,
        ["seq"],
        schema=schema,
        postgresql_where=sa.text("sent_at IS NULL AND quarantined_at IS NOT NULL"),
    )


def downgrade_outbox_v2(op: Operations, schema: str) -> None:
    op.drop_index("ix_outbox_quarantined", OUTBOX, schema=schema)
    op.drop_index("ix_outbox_unsent", OUTBOX, schema=schema)
    op.create_index(
        "ix_outbox_unsent",
        OUTBOX,
        ["seq"],
        schema=schema,
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    for column in ("quarantined_at", "last_error", "attempts"):
        op.drop_column(OUTBOX, column, schema=schema)


def upgrade_outbox_v3(op: Operations, schema: str) -> None:
    """The relay deletes a row once JetStream has acknowledged it (the stream is the record of
    what was published), so the outbox holds only pending and quarantined rows: rows an earlier
    relay marked sent (`sent_at`, kept a day for pruning) go, and so does the index only pruning
    read. The column stays: no relay sets it now, and a row that has it is never claimed."""
    op.execute(f"DELETE FROM {quote_schema(schema)}.{OUTBOX} WHERE sent_at IS NOT NULL")  # noqa: S608
    op.drop_index("ix_outbox_sent_at", OUTBOX, schema=schema)


def downgrade_outbox_v3(op: Operations, schema: str) -> None:
    op.create_index("ix_outbox_sent_at", OUTBOX, ["sent_at"], schema=schema)


def create_processed_v1(op: Operations, schema: str) -> None:
    op.create_table(
        PROCESSED,
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column(
            "processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_processed_events"),
        schema=schema,
    )
    op.create_index("ix_processed_events_processed_at", PROCESSED, ["processed_at"], schema=schema)


def create_consumer_failures_v1(op: Operations, schema: str) -> None:
    """Real handler failures per event, so that outages never count towards dead-lettering and
    the count survives restarts and is shared by replicas. A row lives while an event is failing."""
    op.create_table(
        CONSUMER_FAILURES,
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_consumer_failures"),
        schema=schema,
    )

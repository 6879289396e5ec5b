"""Tenancy's settings: the shared groups its processes read, and its own two.

- `TenancySettings`: the tenant cache, the reconciler and the test hook (service and worker);
- `BackupSettings`: where schema backups go and which client tools take them (worker and the
  `saas tenants` commands).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from saas.common.settings import (
    BusSettings,
    DatabaseSettings,
    EventSettings,
    Settings,
    TemporalSettings,
    TokenSettings,
)


class TenancySettings(Settings):
    """What tenancy's processes read beyond the shared groups."""

    tenant_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="how long a replica trusts what it read about a tenant (its id and status)",
    )
    tenancy_reconcile_interval: float = Field(
        default=30.0, gt=0, description="seconds between looks for tenants whose workflow stopped"
    )
    tenancy_reconcile_after: float = Field(
        default=60.0,
        gt=0,
        description="a tenant provisioning or deleting this long without a running workflow "
        "gets its workflow started again",
    )
    tenancy_test_faults: Path | None = Field(
        default=None,
        description="tests only (APP_ENV=test): a JSON file {slug: {step: fail|pause:<s>}} that "
        "the worker reads before each provisioning step",
    )

    def production_checks(self) -> list[str]:
        if self.tenancy_test_faults is not None:
            return ["TENANCY_TEST_FAULTS is set: it injects failures and is for tests only"]
        return []


class BackupSettings(Settings):
    """Backups of tenant schemas: `pg_dump`'s custom format, one file per backup."""

    backup_dir: Path = Field(
        default=Path(".devstack/backups"), description="where backups are written"
    )
    pg_bin_dir: Path | None = Field(
        default=None,
        description="folder of pg_dump, pg_restore and psql, of the server's major version or "
        "newer (default: the development stack's, else PATH)",
    )

    def production_checks(self) -> list[str]:
        if not self.backup_dir.is_absolute():
            return [
                f"BACKUP_DIR is {str(self.backup_dir)!r}; give an absolute path on a persistent "
                "volume (a deleted tenant's last backup is written there)"
            ]
        return []


class ServiceSettings(
    DatabaseSettings, BusSettings, EventSettings, TemporalSettings, TokenSettings, TenancySettings
):
    """The tenancy service: it verifies callers' tokens, publishes through its outbox and starts
    workflows."""


class WorkerSettings(
    DatabaseSettings, BusSettings, TemporalSettings, TenancySettings, BackupSettings
):
    """The tenancy worker: it runs the workflows (tenant schemas, backups) and calls identity; its
    events go out through the service's outbox relay, so it reads no event settings."""


class ToolSettings(DatabaseSettings, BackupSettings):
    """`saas tenants ...`: the database (as the tenancy login, which owns tenant schemas)."""

"""What the tenancy service's use cases work with, built once where the process is wired."""

from __future__ import annotations

from dataclasses import dataclass

from saas.common.bus import BusClient
from saas.common.db import Database
from saas.common.memberships import Memberships
from saas.common.temporal import Temporal
from saas.tenancy.directory import TenantAccess, TenantDirectory
from saas.tenancy.settings import ServiceSettings
from saas.tenancy.workflows.starter import Starts


@dataclass(frozen=True)
class Deps:
    db: Database
    client: BusClient
    temporal: Temporal
    directory: TenantDirectory
    memberships: Memberships
    access: TenantAccess
    task_queue: str
    starts: Starts

    @classmethod
    def build(
        cls, db: Database, client: BusClient, temporal: Temporal, settings: ServiceSettings
    ) -> Deps:
        directory = TenantDirectory(db, ttl=settings.tenant_cache_seconds)
        memberships = Memberships(client, ttl=settings.membership_cache_seconds)
        return cls(
            db=db,
            client=client,
            temporal=temporal,
            directory=directory,
            memberships=memberships,
            access=TenantAccess(directory, memberships),
            task_queue=settings.temporal_task_queue,
            starts=Starts(temporal, settings.temporal_task_queue),
        )

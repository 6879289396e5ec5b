"""What identity's use cases work with, built once where the process is wired (`main.build`)."""

from __future__ import annotations

from dataclasses import dataclass

from saas.common.db import Database
from saas.identity.keys import KeyRing
from saas.identity.lockout import LockoutPolicy
from saas.identity.passwords import Passwords
from saas.identity.settings import IdentitySettings


@dataclass(frozen=True)
class Deps:
    db: Database
    settings: IdentitySettings
    passwords: Passwords
    keys: KeyRing
    lockout: LockoutPolicy

    @classmethod
    def build(cls, db: Database, settings: IdentitySettings) -> Deps:
        s = settings
        return cls(
            db=db,
            settings=s,
            passwords=Passwords(
                time_cost=s.argon2_time_cost,
                memory_cost=s.argon2_memory_cost,
                parallelism=s.argon2_parallelism,
                threads=s.password_hash_threads,
                max_waiting=s.password_hash_queue,
            ),
            keys=KeyRing(db, s.jwt_secret_key, access_ttl=s.access_token_ttl, leeway=s.jwt_leeway),
            lockout=LockoutPolicy(
                failures_before_lock=s.login_failures_before_lock,
                lock_seconds=s.login_lock_seconds,
                max_lock_seconds=s.login_lock_max_seconds,
                address_limit=s.address_failures_limit,
                address_window=s.address_failure_window,
                address_block=s.address_block_seconds,
            ),
        )

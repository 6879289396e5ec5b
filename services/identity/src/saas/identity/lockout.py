"""Failed logins: when an account locks, for how long, and when a client address is refused.

Pure rules; the counters live in PostgreSQL (`users` for accounts, `address_failures` for
addresses, see `sessions.py`), so every replica sees the same counts.

- An account locks after `failures_before_lock` failures in a row; each lock lasts twice the
  previous one, from `lock_seconds` up to `max_lock_seconds`. A locked account answers exactly
  as a wrong password does, and attempts while locked are not counted (they change nothing). A
  successful login resets the count and the doubling.
- A client address with `address_limit` failures within `address_window` seconds is refused
  (without checking any password, so a flood costs no hashing) for `address_block` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class LockoutPolicy:
    failures_before_lock: int = 5
    lock_seconds: float = 60.0
    max_lock_seconds: float = 3600.0
    address_limit: int = 50
    address_window: float = 900.0
    address_block: float = 900.0


@dataclass(frozen=True)
class AccountState:
    failed_logins: int
    locks: int
    locked_until: datetime | None


def is_locked(state: AccountState, now: datetime) -> bool:
    return state.locked_until is not None and now < state.locked_until


def lock_duration(policy: LockoutPolicy, locks_before: int) -> timedelta:
    """The length of the next lock: doubling with each lock, capped."""
    seconds = policy.lock_seconds * 2 ** min(locks_before, 30)
    return timedelta(seconds=min(seconds, policy.max_lock_seconds))


def after_failure(policy: LockoutPolicy, state: AccountState, now: datetime) -> AccountState:
    """The account's state after a wrong password (not called while it is locked)."""
    failures = state.failed_logins + 1
    if failures < policy.failures_before_lock:
        return AccountState(failures, state.locks, state.locked_until)
    return AccountState(0, state.locks + 1, now + lock_duration(policy, state.locks))


AFTER_SUCCESS = AccountState(failed_logins=0, locks=0, locked_until=None)


@dataclass(frozen=True)
class AddressState:
    window_started_at: datetime
    failures: int
    blocked_until: datetime | None


def address_blocked(state: AddressState | None, now: datetime) -> bool:
    return state is not None and state.blocked_until is not None and now < state.blocked_until


def address_after_failure(
    policy: LockoutPolicy, state: AddressState | None, now: datetime
) -> AddressState:
    """Count a failure from an address in its window; block it when the window is full."""
    window = timedelta(seconds=policy.address_window)
    if state is None or now >= state.window_started_at + window:
        state = AddressState(now, 0, None)
    failures = state.failures + 1
    blocked = (
        now + timedelta(seconds=policy.address_block)
        if failures >= policy.address_limit
        else state.blocked_until
    )
    return AddressState(state.window_started_at, failures, blocked)

"""Failed-login rules: account locks doubling up to a cap, address windows and blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from saas.identity.lockout import (
    AccountState,
    LockoutPolicy,
    address_after_failure,
    address_blocked,
    after_failure,
    is_locked,
    lock_duration,
)

POLICY = LockoutPolicy(
    failures_before_lock=3,
    lock_seconds=60,
    max_lock_seconds=300,
    address_limit=4,
    address_window=600,
    address_block=900,
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fail(state: AccountState, times: int, at: datetime = T0) -> AccountState:
    for _ in range(times):
        state = after_failure(POLICY, state, at)
    return state


def test_the_account_locks_at_the_threshold_and_not_before():
    fresh = AccountState(0, 0, None)
    assert not is_locked(fail(fresh, 2), T0)
    locked = fail(fresh, 3)
    assert is_locked(locked, T0) and locked.locked_until == T0 + timedelta(seconds=60)
    assert not is_locked(locked, T0 + timedelta(seconds=61))


def test_each_lock_lasts_twice_the_previous_up_to_the_cap():
    assert [lock_duration(POLICY, n).total_seconds() for n in range(5)] == [60, 120, 240, 300, 300]
    assert lock_duration(POLICY, 10_000).total_seconds() == 300  # no overflow, still the cap


def test_a_second_lock_is_longer_than_the_first():
    first = fail(AccountState(0, 0, None), 3)
    later = T0 + timedelta(seconds=61)
    second = fail(first, 3, later)
    assert second.locks == 2 and second.locked_until == later + timedelta(seconds=120)


def test_an_address_is_blocked_once_its_window_is_full():
    state = None
    for _ in range(3):
        state = address_after_failure(POLICY, state, T0)
    assert not address_blocked(state, T0)
    state = address_after_failure(POLICY, state, T0)
    assert address_blocked(state, T0) and not address_blocked(state, T0 + timedelta(seconds=901))


def test_an_address_window_starts_again_after_it_ends():
    state = None
    for _ in range(3):
        state = address_after_failure(POLICY, state, T0)
    later = T0 + timedelta(seconds=601)
    state = address_after_failure(POLICY, state, later)
    assert (
        state.failures == 1
        and state.window_started_at == later
        and not address_blocked(state, later)
    )

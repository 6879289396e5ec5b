"""A tenant's statuses move only along the table; anything else is a conflict."""

import pytest

from saas.common.contracts.tenancy import TenantStatus as S
from saas.common.errors import ErrorCode, ServiceError
from saas.tenancy.lifecycle import TRANSITIONS, can_move, check_transition, sources

LEGAL = {
    (S.PROVISIONING, S.READY),
    (S.PROVISIONING, S.FAILED),
    (S.FAILED, S.PROVISIONING),
    (S.FAILED, S.DELETING),
    (S.READY, S.SUSPENDED),
    (S.READY, S.DELETING),
    (S.SUSPENDED, S.READY),
    (S.SUSPENDED, S.DELETING),
    (S.DELETING, S.DELETED),
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("new", list(S))
def test_only_the_listed_moves_are_legal(current, new):
    assert can_move(current, new) is ((current, new) in LEGAL)


@pytest.mark.parametrize(
    ("current", "new"),
    [(S.READY, S.PROVISIONING), (S.DELETED, S.READY), (S.DELETING, S.READY), (S.READY, S.READY)],
)
def test_an_illegal_move_is_a_conflict_naming_the_status(current, new):
    with pytest.raises(ServiceError) as caught:
        check_transition(current, new)
    assert caught.value.code is ErrorCode.CONFLICT
    assert caught.value.details == {"status": current.value}


def test_deleted_is_the_end_and_every_status_is_in_the_table():
    assert set(TRANSITIONS) == set(S)
    assert TRANSITIONS[S.DELETED] == frozenset()


def test_sources_are_the_statuses_a_move_may_start_from():
    assert sources(S.DELETING) == {S.READY, S.SUSPENDED, S.FAILED}
    assert sources(S.PROVISIONING) == {S.FAILED}
    assert sources(S.DELETED) == {S.DELETING}

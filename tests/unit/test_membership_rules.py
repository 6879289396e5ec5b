"""Who may change whose role, who may remove whom, who may invite whom; a tenant keeps an owner."""

from __future__ import annotations

import pytest

from saas.common.contracts.identity import Role
from saas.common.errors import ErrorCode, ServiceError
from saas.identity.invitations import check_invite
from saas.identity.memberships import check_removal, check_role_change

OWNER, ADMIN, MEMBER = Role.OWNER, Role.ADMIN, Role.MEMBER


def refused(check, *args, **kwargs) -> ErrorCode:
    with pytest.raises(ServiceError) as caught:
        check(*args, **kwargs)
    return caught.value.code


@pytest.mark.parametrize(
    ("actor", "target", "new"),
    [
        (OWNER, MEMBER, ADMIN),
        (OWNER, ADMIN, OWNER),
        (OWNER, OWNER, MEMBER),
        (ADMIN, MEMBER, ADMIN),
        (ADMIN, ADMIN, MEMBER),
    ],
)
def test_owners_and_admins_change_roles_within_their_reach(actor, target, new):
    check_role_change(actor, target, new, owners=2)


def test_a_member_changes_nobody():
    assert refused(check_role_change, MEMBER, MEMBER, ADMIN, owners=1) is ErrorCode.FORBIDDEN


@pytest.mark.parametrize(("target", "new"), [(OWNER, MEMBER), (OWNER, ADMIN), (MEMBER, OWNER)])
def test_an_admin_can_neither_change_an_owner_nor_make_one(target, new):
    assert refused(check_role_change, ADMIN, target, new, owners=2) is ErrorCode.FORBIDDEN


def test_the_last_owner_cannot_be_demoted():
    assert refused(check_role_change, OWNER, OWNER, ADMIN, owners=1) is ErrorCode.CONFLICT


def test_the_last_owner_can_neither_be_removed_nor_leave():
    assert refused(check_removal, OWNER, OWNER, 1, leaving=True) is ErrorCode.CONFLICT
    assert refused(check_removal, OWNER, OWNER, 1, leaving=False) is ErrorCode.CONFLICT


def test_anyone_may_leave_but_only_managers_remove_others():
    check_removal(MEMBER, MEMBER, 1, leaving=True)
    check_removal(OWNER, OWNER, 2, leaving=True)
    assert refused(check_removal, MEMBER, ADMIN, 1, leaving=False) is ErrorCode.FORBIDDEN
    check_removal(ADMIN, MEMBER, 1, leaving=False)


def test_an_admin_cannot_remove_an_owner():
    assert refused(check_removal, ADMIN, OWNER, 2, leaving=False) is ErrorCode.FORBIDDEN


def test_only_owners_invite_owners_and_members_invite_nobody():
    check_invite(OWNER, OWNER)
    check_invite(ADMIN, ADMIN)
    assert refused(check_invite, ADMIN, OWNER) is ErrorCode.FORBIDDEN
    assert refused(check_invite, MEMBER, MEMBER) is ErrorCode.FORBIDDEN

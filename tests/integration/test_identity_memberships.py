"""Memberships and invitations against real PostgreSQL and NATS: roles, the last owner, invitations
that only their addressee can accept once, tenancy's owner agreement, and deleted tenants."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from saas.common.bus.requests import Empty
from saas.common.contracts.identity import (
    AcceptInvitation,
    AddOwner,
    ChangeRole,
    CreateInvitation,
    Done,
    Invitation,
    ListMembers,
    Member,
    Members,
    Membership,
    MembershipQuery,
    MyTenant,
    MyTenants,
    RemoveMember,
    Role,
    User,
)
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events import Actor, new_event
from saas.common.events.catalogue import TenantDeleted
from saas.common.events.outbox import Outbox
from tests.support.identity import events, new_email


async def refused(call) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await call
    return caught.value


class Person:
    def __init__(self, identity, email: str, token: str, user_id: str) -> None:
        self.identity, self.email, self.token, self.id = identity, email, token, user_id

    async def __call__(self, operation, payload, reply):
        return await self.identity.call(operation, payload, reply, token=self.token)


async def person(identity) -> Person:
    email = await identity.signed_up()
    pair = await identity.login(email)
    me = await identity.call("users.me", Empty(), User, token=pair.access_token)
    return Person(identity, email, pair.access_token, me.id)


async def tenant_owned_by(identity, owner: Person) -> str:
    tenant_id = str(uuid.uuid4())
    await identity.call(
        "internal.add_owner", AddOwner(tenant_id=tenant_id, user_id=owner.id), Membership
    )
    return tenant_id


async def test_add_owner_is_idempotent_and_makes_the_creator_owner(identity):
    owner = await person(identity)
    tenant_id = str(uuid.uuid4())
    request = AddOwner(tenant_id=tenant_id, user_id=owner.id)
    for _ in range(3):
        reply = await identity.call("internal.add_owner", request, Membership)
        assert reply.role is Role.OWNER
    assert len(await events(identity, "membership.added", subject=owner.id)) == 1
    role = await identity.call(
        "internal.role", MembershipQuery(tenant_id=tenant_id, user_id=owner.id), Membership
    )
    assert role.role is Role.OWNER
    mine = await owner("users.tenants", Empty(), MyTenants)
    assert [(t.tenant_id, t.role) for t in mine.items] == [(tenant_id, Role.OWNER)]
    nobody = await identity.call(
        "internal.role", MembershipQuery(tenant_id=tenant_id, user_id=str(uuid.uuid4())), Membership
    )
    assert nobody.role is None
    missing = await refused(
        identity.call(
            "internal.add_owner",
            AddOwner(tenant_id=tenant_id, user_id=str(uuid.uuid4())),
            Membership,
        )
    )
    assert missing.code is ErrorCode.NOT_FOUND


async def test_an_invitation_is_accepted_once_and_only_by_its_addressee(identity):
    owner, invitee, intruder = [await person(identity) for _ in range(3)]
    tenant_id = await tenant_owned_by(identity, owner)
    invitation = await owner(
        "invitations.create",
        CreateInvitation(tenant_id=tenant_id, email=invitee.email.upper(), role=Role.ADMIN),
        Invitation,
    )
    assert invitation.email == invitee.email and invitation.role is Role.ADMIN
    token = await identity.mail_token(invitee.email, "invitation")
    error = await refused(intruder("invitations.accept", AcceptInvitation(token=token), MyTenant))
    assert error.code is ErrorCode.FORBIDDEN
    joined = await invitee("invitations.accept", AcceptInvitation(token=token), MyTenant)
    assert (joined.tenant_id, joined.role) == (tenant_id, Role.ADMIN)
    again = await refused(invitee("invitations.accept", AcceptInvitation(token=token), MyTenant))
    assert again.code is ErrorCode.BAD_REQUEST
    members = await owner("members.list", ListMembers(tenant_id=tenant_id), Members)
    assert {(m.email, m.role) for m in members.items} == {
        (owner.email, Role.OWNER),
        (invitee.email, Role.ADMIN),
    }
    (accepted,) = await events(identity, "invitation.accepted", subject=invitation.id)
    assert accepted["tenant_id"] == tenant_id and accepted["actor"] == {
        "type": "user",
        "id": invitee.id,
    }


async def test_a_newer_invitation_replaces_the_pending_one(identity):
    owner, invitee = await person(identity), await person(identity)
    tenant_id = await tenant_owned_by(identity, owner)
    request = CreateInvitation(tenant_id=tenant_id, email=invitee.email, role=Role.MEMBER)
    await owner("invitations.create", request, Invitation)
    first = await identity.mail_token(invitee.email, "invitation")
    await owner("invitations.create", request, Invitation)
    second = await identity.mail_token(invitee.email, "invitation", after=1)
    assert (
        await refused(invitee("invitations.accept", AcceptInvitation(token=first), MyTenant))
    ).code is ErrorCode.BAD_REQUEST
    assert await invitee("invitations.accept", AcceptInvitation(token=second), MyTenant)


async def test_roles_change_within_reach_and_the_last_owner_stays(identity):
    owner, admin, member = [await person(identity) for _ in range(3)]
    tenant_id = await tenant_owned_by(identity, owner)
    for who, role in ((admin, Role.ADMIN), (member, Role.MEMBER)):
        await owner(
            "invitations.create",
            CreateInvitation(tenant_id=tenant_id, email=who.email, role=role),
            Invitation,
        )
        await who(
            "invitations.accept",
            AcceptInvitation(token=await identity.mail_token(who.email, "invitation")),
            MyTenant,
        )

    def change(actor, target, role):
        return actor(
            "members.change_role",
            ChangeRole(tenant_id=tenant_id, user_id=target.id, role=role),
            Member,
        )

    def remove(actor, target):
        return actor("members.remove", RemoveMember(tenant_id=tenant_id, user_id=target.id), Done)

    assert (await refused(change(owner, owner, Role.ADMIN))).code is ErrorCode.CONFLICT
    assert (await refused(remove(owner, owner))).code is ErrorCode.CONFLICT
    assert (await refused(change(admin, owner, Role.MEMBER))).code is ErrorCode.FORBIDDEN
    assert (await refused(remove(admin, owner))).code is ErrorCode.FORBIDDEN
    assert (await refused(change(admin, member, Role.OWNER))).code is ErrorCode.FORBIDDEN
    assert (await refused(change(member, admin, Role.MEMBER))).code is ErrorCode.FORBIDDEN
    assert (await change(admin, member, Role.ADMIN)).role is Role.ADMIN
    assert (await change(owner, admin, Role.OWNER)).role is Role.OWNER
    assert (await change(owner, owner, Role.MEMBER)).role is Role.MEMBER  # another owner exists now
    (changed, *_) = await events(identity, "membership.role_changed", subject=member.id)
    assert changed["data"] == {
        "tenant_id": tenant_id,
        "user_id": member.id,
        "old_role": "member",
        "new_role": "admin",
    }
    await remove(member, member)  # leaving
    gone = await refused(member("members.list", ListMembers(tenant_id=tenant_id), Members))
    assert gone.code is ErrorCode.NOT_FOUND


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(identity):
    a, b = await person(identity), await person(identity)
    tenant_id = await tenant_owned_by(identity, a)
    await identity.call(
        "internal.add_owner", AddOwner(tenant_id=tenant_id, user_id=b.id), Membership
    )
    results = await asyncio.gather(
        a(
            "members.change_role",
            ChangeRole(tenant_id=tenant_id, user_id=b.id, role=Role.MEMBER),
            Member,
        ),
        b(
            "members.change_role",
            ChangeRole(tenant_id=tenant_id, user_id=a.id, role=Role.MEMBER),
            Member,
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Member) for r in results) == 1
    roles = [
        (
            await identity.call(
                "internal.role", MembershipQuery(tenant_id=tenant_id, user_id=p.id), Membership
            )
        ).role
        for p in (a, b)
    ]
    assert sorted(roles) == [Role.MEMBER, Role.OWNER]


async def test_a_non_member_is_told_the_tenant_does_not_exist(identity):
    owner, stranger = await person(identity), await person(identity)
    tenant_id = await tenant_owned_by(identity, owner)
    for call in (
        stranger("members.list", ListMembers(tenant_id=tenant_id), Members),
        stranger(
            "invitations.create",
            CreateInvitation(tenant_id=tenant_id, email=new_email()),
            Invitation,
        ),
        stranger("members.remove", RemoveMember(tenant_id=tenant_id, user_id=owner.id), Done),
    ):
        assert (await refused(call)).code is ErrorCode.NOT_FOUND
    unauthenticated = await refused(
        identity.call("members.list", ListMembers(tenant_id=tenant_id), Members)
    )
    assert unauthenticated.code is ErrorCode.UNAUTHORIZED


async def test_members_are_listed_page_by_page(identity):
    owner = await person(identity)
    tenant_id = await tenant_owned_by(identity, owner)
    for _ in range(4):
        other = await person(identity)
        await identity.call(
            "internal.add_owner", AddOwner(tenant_id=tenant_id, user_id=other.id), Membership
        )
    seen, cursor = [], None
    while True:
        page = await owner(
            "members.list", ListMembers(tenant_id=tenant_id, limit=2, cursor=cursor), Members
        )
        seen += [m.user_id for m in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 5


async def test_a_deleted_tenant_loses_its_memberships(identity):
    owner, member = await person(identity), await person(identity)
    tenant_id = await tenant_owned_by(identity, owner)
    await identity.call(
        "internal.add_owner", AddOwner(tenant_id=tenant_id, user_id=member.id), Membership
    )
    deleted = new_event(
        TenantDeleted(tenant_id=tenant_id, slug="gone-co"),
        source="saas/tenancy",
        actor=Actor.system("tenancy"),
        tenant_id=tenant_id,
    )
    async with identity.db.session() as session:
        await Outbox("identity").add(session, deleted)  # any outbox reaches the stream alike
    for _ in range(100):
        role = await identity.call(
            "internal.role", MembershipQuery(tenant_id=tenant_id, user_id=owner.id), Membership
        )
        if role.role is None:
            break
        await asyncio.sleep(0.1)
    assert role.role is None
    assert (await owner("users.tenants", Empty(), MyTenants)).items == []
    removed = [
        e for e in await events(identity, "membership.removed") if e["tenant_id"] == tenant_id
    ]
    assert {e["data"]["user_id"] for e in removed} == {owner.id, member.id}

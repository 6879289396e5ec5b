"""Invitations: an owner or admin invites an address into a tenant with a role.

The invitation is written here and `invitation.created` published; the mail consumer then makes
its single-use secret (storing only the hash) and mails the link. Accepting needs both the token
(proof of access to the mailbox) and a logged-in account whose address is the invited one; it
is single use, expires after INVITATION_TTL, and a newer invitation to the same address replaces
an older one still pending.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.contracts.identity import (
    AcceptInvitation,
    CreateInvitation,
    Invitation,
    MyTenant,
    Role,
)
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events.catalogue import InvitationAccepted, InvitationCreated
from saas.common.tokens import Claims
from saas.identity.accounts import mark_verified, normalise_email
from saas.identity.deps import Deps
from saas.identity.events import Origin, publish
from saas.identity.memberships import (
    MANAGERS,
    add_member,
    as_uuid,
    caller_role,
    lock_tenant,
    role_in,
)
from saas.identity.store.tables import invitations, users
from saas.identity.tokens import new_single_use_token, secret_matches, split_single_use_token

INVALID_INVITATION = "this invitation is invalid, used or expired"


def now() -> datetime:
    return datetime.now(UTC)


def check_invite(actor: Role, role: Role) -> None:
    """May `actor` invite someone with `role`? (pure)"""
    if actor not in MANAGERS:
        raise ServiceError(ErrorCode.FORBIDDEN, "inviting needs the owner or admin role")
    if actor is Role.ADMIN and role is Role.OWNER:
        raise ServiceError(ErrorCode.FORBIDDEN, "only an owner can invite an owner")


async def create(
    deps: Deps, claims: Claims, request: CreateInvitation, origin: Origin
) -> Invitation:
    tenant_id = as_uuid(request.tenant_id, "tenant")
    email = normalise_email(request.email)
    async with deps.db.session() as session:
        check_invite(await caller_role(session, tenant_id, claims), request.role)
        invitee = (
            await session.execute(sa.select(users.c.id).where(users.c.email == email))
        ).scalar_one_or_none()
        if invitee is not None and await role_in(session, tenant_id, invitee) is not None:
            raise ServiceError(ErrorCode.CONFLICT, "that address already belongs to a member")
        await session.execute(
            sa.update(invitations)
            .where(
                invitations.c.tenant_id == tenant_id,
                invitations.c.email == email,
                invitations.c.accepted_at.is_(None),
                invitations.c.revoked_at.is_(None),
            )
            .values(revoked_at=sa.func.now())
        )
        invitation = Invitation(
            id=str(uuid.uuid4()),
            tenant_id=str(tenant_id),
            email=email,
            role=request.role,
            expires_at=now() + timedelta(seconds=deps.settings.invitation_ttl),
        )
        await session.execute(
            sa.insert(invitations).values(
                id=uuid.UUID(invitation.id),
                tenant_id=tenant_id,
                email=email,
                role=request.role.value,
                invited_by=as_uuid(claims.user_id),
                expires_at=invitation.expires_at,
            )
        )
        await publish(
            session,
            origin,
            InvitationCreated(
                invitation_id=invitation.id,
                tenant_id=invitation.tenant_id,
                email=email,
                role=request.role.value,
            ),
            tenant_id=invitation.tenant_id,
            subject=invitation.id,
        )
    return invitation


async def issue_secret(session: AsyncSession, invitation_id: uuid.UUID) -> str | None:
    """A fresh token for a pending invitation (for the mail consumer), or None if it is no
    longer pending. Only the secret's hash is stored; a newer secret replaces an older one."""
    token, secret_hash = new_single_use_token(invitation_id)
    updated = (
        await session.execute(
            sa.update(invitations)
            .where(
                invitations.c.id == invitation_id,
                invitations.c.accepted_at.is_(None),
                invitations.c.revoked_at.is_(None),
                invitations.c.expires_at > sa.func.now(),
            )
            .values(secret_hash=secret_hash)
            .returning(invitations.c.id)
        )
    ).scalar_one_or_none()
    return token if updated is not None else None


async def accept(deps: Deps, claims: Claims, request: AcceptInvitation, origin: Origin) -> MyTenant:
    parts = split_single_use_token(request.token)
    if parts is None:
        raise ServiceError(ErrorCode.BAD_REQUEST, INVALID_INVITATION)
    invitation_id, secret = parts
    user_id = as_uuid(claims.user_id, "user")
    async with deps.db.session() as session:
        row = (
            await session.execute(
                sa.select(invitations).where(invitations.c.id == invitation_id).with_for_update()
            )
        ).one_or_none()
        if (
            row is None
            or not secret_matches(secret, row.secret_hash)
            or row.accepted_at is not None
            or row.revoked_at is not None
            or row.expires_at <= now()
        ):
            raise ServiceError(ErrorCode.BAD_REQUEST, INVALID_INVITATION)
        email = (
            await session.execute(sa.select(users.c.email).where(users.c.id == user_id))
        ).scalar_one_or_none()
        if email != row.email:
            raise ServiceError(
                ErrorCode.FORBIDDEN,
                "this invitation was sent to another address: log in with that address to accept it",
            )
        await lock_tenant(session, row.tenant_id)
        role = Role(row.role)
        if not await add_member(session, row.tenant_id, user_id, role, origin):
            raise ServiceError(ErrorCode.CONFLICT, "you are already a member of this tenant")
        await session.execute(
            sa.update(invitations)
            .where(invitations.c.id == invitation_id)
            .values(accepted_at=sa.func.now(), accepted_by=user_id)
        )
        await publish(
            session,
            origin,
            InvitationAccepted(
                invitation_id=str(invitation_id), tenant_id=str(row.tenant_id), user_id=str(user_id)
            ),
            tenant_id=str(row.tenant_id),
            subject=str(invitation_id),
        )
        # The token came through the invited mailbox, which is this account's address.
        await mark_verified(session, user_id, origin)
        since = now()
    return MyTenant(tenant_id=str(row.tenant_id), role=role, since=since)

"""Members of a tenant and invitations: `/api/v1/tenants/{slug}/members*`,
`/api/v1/tenants/{slug}/invitations`, `/api/v1/invitations/accept`.

The gateway resolves `{slug}` to the tenant's id (tenancy) for authenticated callers only; identity
checks the caller's role in that tenant for every operation.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from saas.common.contracts.identity import (
    AcceptInvitation,
    ChangeRole,
    CreateInvitation,
    Done,
    Invitation,
    ListMembers,
    Member,
    Members,
    MyTenant,
    NewInvitation,
    RemoveMember,
    RoleChange,
)
from saas.gateway.dependencies import Identity, Tenant
from saas.gateway.problems import UPSTREAM, problems
from saas.gateway.routes import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["members"])
UserId = Annotated[str, Path(min_length=1, max_length=100)]


@router.get(
    "/tenants/{slug}/members",
    response_model=Members,
    responses=problems(400, 401, 403, 404, 422, *UPSTREAM),
)
async def list_members(
    tenant: Tenant,
    identity: Identity,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Members:
    """The tenant's members, oldest first; any member may list them."""
    return await identity(
        "members.list", ListMembers(tenant_id=tenant.id, cursor=cursor, limit=limit), Members
    )


@router.patch(
    "/tenants/{slug}/members/{user_id}",
    response_model=Member,
    responses=problems(401, 403, 404, 409, 413, 422, *UPSTREAM),
)
async def change_role(
    tenant: Tenant, user_id: UserId, body: RoleChange, identity: Identity
) -> Member:
    """Change a member's role (owners and admins; only owners touch owners; a tenant keeps an
    owner)."""
    return await identity(
        "members.change_role",
        ChangeRole(tenant_id=tenant.id, user_id=user_id, role=body.role),
        Member,
    )


@router.delete(
    "/tenants/{slug}/members/{user_id}",
    status_code=204,
    responses=problems(401, 403, 404, 409, 422, *UPSTREAM),
)
async def remove_member(tenant: Tenant, user_id: UserId, identity: Identity) -> Response:
    """Remove a member (owners and admins), or leave (your own id); the last owner stays."""
    await identity("members.remove", RemoveMember(tenant_id=tenant.id, user_id=user_id), Done)
    return Response(status_code=204)


@router.post(
    "/tenants/{slug}/invitations",
    status_code=201,
    response_model=Invitation,
    responses=problems(401, 403, 404, 409, 413, 422, *UPSTREAM),
)
async def invite(tenant: Tenant, body: NewInvitation, identity: Identity) -> Invitation:
    """Invite an address with a role (owners and admins); the link goes out by mail."""
    return await identity(
        "invitations.create",
        CreateInvitation(tenant_id=tenant.id, email=body.email, role=body.role),
        Invitation,
    )


@router.post(
    "/invitations/accept",
    response_model=MyTenant,
    responses=problems(400, 401, 403, 409, 413, 422, *UPSTREAM),
)
async def accept_invitation(body: AcceptInvitation, identity: Identity) -> MyTenant:
    """Accept an invitation with the token from its mail, logged in with the invited address."""
    return await identity("invitations.accept", body, MyTenant)

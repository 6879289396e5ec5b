"""Identity's bus operations (`svc.identity.*`): each one line of wiring into a use case.

Operations that act for a user verify the forwarded access token themselves (`ctx.user()`);
nothing else on a request is believed. `internal.*` operations are for other services (tenancy
asks them while provisioning); the gateway never routes to them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.bus import RequestContext, Responder
from saas.common.bus.requests import Empty
from saas.common.contracts.identity import (
    Accepted,
    AcceptInvitation,
    AddOwner,
    ChangeRole,
    CreateInvitation,
    Done,
    Invitation,
    Jwks,
    ListMembers,
    LoginRequest,
    LogoutRequest,
    Member,
    Members,
    Membership,
    MembershipQuery,
    MyTenant,
    MyTenants,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    RemoveMember,
    Session,
    TokenPair,
    User,
    VerifyEmailRequest,
)
from saas.common.events import EventEnvelope
from saas.identity import accounts, invitations, memberships, sessions
from saas.identity.deps import Deps
from saas.identity.events import Origin


def register(responder: Responder, deps: Deps) -> None:
    op = responder.operation

    # -- accounts and sessions (anonymous) ---------------------------------------------------
    @op("register", RegisterRequest)
    async def register_(request: RegisterRequest, ctx: RequestContext) -> Accepted:
        return await accounts.register(deps, request, Origin.of_request(ctx))

    @op("login", LoginRequest)
    async def login(request: LoginRequest, ctx: RequestContext) -> TokenPair:
        return await sessions.login(deps, request, Origin.of_request(ctx))

    @op("refresh", RefreshRequest)
    async def refresh(request: RefreshRequest, ctx: RequestContext) -> TokenPair:
        return await sessions.refresh(deps, request, Origin.of_request(ctx))

    @op("logout", LogoutRequest)
    async def logout(request: LogoutRequest, ctx: RequestContext) -> Done:
        return await sessions.logout(deps, request, Origin.of_request(ctx))

    @op("verify_email", VerifyEmailRequest)
    async def verify_email(request: VerifyEmailRequest, ctx: RequestContext) -> Done:
        return await accounts.verify_email(deps, request, Origin.of_request(ctx))

    @op("password_reset.request", PasswordResetRequest)
    async def reset_request(request: PasswordResetRequest, ctx: RequestContext) -> Accepted:
        return await accounts.request_password_reset(deps, request, Origin.of_request(ctx))

    @op("password_reset.confirm", PasswordResetConfirm)
    async def reset_confirm(request: PasswordResetConfirm, ctx: RequestContext) -> Done:
        return await accounts.confirm_password_reset(deps, request, Origin.of_request(ctx))

    @op("jwks", Empty)
    async def jwks(_: Empty, __: RequestContext) -> Jwks:
        return Jwks.model_validate(await deps.keys.jwks())

    # -- the caller --------------------------------------------------------------------------
    @op("users.me", Empty)
    async def me(_: Empty, ctx: RequestContext) -> User:
        return await accounts.me(deps, await ctx.user())

    @op("users.session", Empty)
    async def session(_: Empty, ctx: RequestContext) -> Session:
        claims = await ctx.user()
        return Session(
            user_id=claims.user_id,
            session_id=claims.session_id,
            platform_admin=claims.platform_admin,
            expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
        )

    @op("users.tenants", Empty)
    async def my_tenants(_: Empty, ctx: RequestContext) -> MyTenants:
        return await accounts.my_tenants(deps, await ctx.user())

    # -- memberships and invitations ---------------------------------------------------------
    @op("members.list", ListMembers)
    async def list_members(request: ListMembers, ctx: RequestContext) -> Members:
        return await memberships.list_members(deps, await ctx.user(), request)

    @op("members.change_role", ChangeRole)
    async def change_role(request: ChangeRole, ctx: RequestContext) -> Member:
        claims = await ctx.user()
        return await memberships.change_role(
            deps, claims, request, Origin.of_request(ctx, claims.user_id)
        )

    @op("members.remove", RemoveMember)
    async def remove_member(request: RemoveMember, ctx: RequestContext) -> Done:
        claims = await ctx.user()
        await memberships.remove_member(
            deps, claims, request, Origin.of_request(ctx, claims.user_id)
        )
        return Done()

    @op("invitations.create", CreateInvitation)
    async def invite(request: CreateInvitation, ctx: RequestContext) -> Invitation:
        claims = await ctx.user()
        return await invitations.create(
            deps, claims, request, Origin.of_request(ctx, claims.user_id)
        )

    @op("invitations.accept", AcceptInvitation)
    async def accept(request: AcceptInvitation, ctx: RequestContext) -> MyTenant:
        claims = await ctx.user()
        return await invitations.accept(
            deps, claims, request, Origin.of_request(ctx, claims.user_id)
        )

    # -- between services --------------------------------------------------------------------
    @op("internal.add_owner", AddOwner)
    async def add_owner(request: AddOwner, ctx: RequestContext) -> Membership:
        return await memberships.add_owner(deps, request, Origin.system("tenancy", ctx.request_id))

    @op("internal.role", MembershipQuery)
    async def role(request: MembershipQuery, _: RequestContext) -> Membership:
        return await memberships.membership(deps, request)


async def on_tenant_events(session: AsyncSession, batch: list[EventEnvelope]) -> None:
    """`tenant.deleted`: the tenant's memberships and invitations go with it."""
    for event in batch:
        if event.type == "tenant.deleted":
            origin = Origin.system("identity", event.correlation_id)
            await memberships.forget_tenant(session, event.data["tenant_id"], origin)

"""`/api/v1/users/me*`: the authenticated caller's account and tenants."""

from __future__ import annotations

from fastapi import APIRouter

from saas.common.bus.requests import Empty
from saas.common.contracts.identity import MyTenants, Session, User
from saas.gateway.dependencies import Identity
from saas.gateway.problems import UPSTREAM, problems
from saas.gateway.routes import API_PREFIX

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])


@router.get("/me", response_model=User, responses=problems(401, *UPSTREAM))
async def me(identity: Identity) -> User:
    """The caller's account."""
    return await identity("users.me", Empty(), User)


@router.get("/me/session", response_model=Session, responses=problems(401, *UPSTREAM))
async def my_session(identity: Identity) -> Session:
    """What the caller's access token says (user, session, platform admin, expiry), as identity
    reads it: no account lookup, so it answers even for an account deleted a moment ago, until
    the token expires."""
    return await identity("users.session", Empty(), Session)


@router.get("/me/tenants", response_model=MyTenants, responses=problems(401, *UPSTREAM))
async def my_tenants(identity: Identity) -> MyTenants:
    """The tenants the caller belongs to, with their role and since when."""
    return await identity("users.tenants", Empty(), MyTenants)

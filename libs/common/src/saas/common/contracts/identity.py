"""Requests to and replies from identity (`svc.identity.*`), and the HTTP bodies of its routes.

The gateway publishes these models in its OpenAPI document as they are, so a field added here is
a field of the public API. Passwords and tokens travel only in requests and in the replies that
hand them out (their fields are left out of `repr`); they never appear in an event or a log line.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

EMAIL_MAX = 254
PASSWORD_MAX = 256  # argon2 takes any length; this bounds the work a request can ask for
TOKEN_MAX = 512


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


# -- accounts ------------------------------------------------------------------------------------
class RegisterRequest(Strict):
    email: EmailStr = Field(max_length=EMAIL_MAX)
    password: str = Field(max_length=PASSWORD_MAX, repr=False)


class Accepted(BaseModel):
    """The same answer whatever happened behind it (the address may or may not have an account)."""

    status: Literal["accepted"] = "accepted"
    message: str


class LoginRequest(Strict):
    email: EmailStr = Field(max_length=EMAIL_MAX)
    password: str = Field(max_length=PASSWORD_MAX, repr=False)


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=TOKEN_MAX, repr=False)


class LogoutRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=TOKEN_MAX, repr=False)
    everywhere: bool = Field(
        default=False, description="revoke every session of the user, not only this one"
    )


class TokenPair(BaseModel):
    """An access token for `Authorization: Bearer`, and the refresh token that renews it once."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="seconds the access token is valid")
    refresh_token: str
    refresh_expires_in: int = Field(description="seconds the refresh token is valid if unused")


class VerifyEmailRequest(Strict):
    token: str = Field(min_length=1, max_length=TOKEN_MAX, repr=False)


class PasswordResetRequest(Strict):
    email: EmailStr = Field(max_length=EMAIL_MAX)


class PasswordResetConfirm(Strict):
    token: str = Field(min_length=1, max_length=TOKEN_MAX, repr=False)
    new_password: str = Field(max_length=PASSWORD_MAX, repr=False)


class Done(BaseModel):
    status: Literal["ok"] = "ok"


class User(BaseModel):
    id: str
    email: str
    email_verified: bool
    platform_admin: bool
    created_at: datetime


class Session(BaseModel):
    """What the caller's access token says, as identity verified it (no account lookup)."""

    user_id: str
    session_id: str | None = Field(description="the refresh family the token was issued in")
    platform_admin: bool
    expires_at: datetime = Field(description="when the access token stops being accepted")


class MyTenant(BaseModel):
    tenant_id: str
    role: Role
    since: datetime


class MyTenants(BaseModel):
    items: list[MyTenant]


# -- keys ----------------------------------------------------------------------------------------
class Jwks(BaseModel):
    """RFC 7517 JSON Web Key Set: the public keys that verify access tokens."""

    keys: list[dict[str, str]]


# -- memberships and invitations -----------------------------------------------------------------
class TenantRef(Strict):
    tenant_id: str = Field(min_length=1, max_length=100)


class Member(BaseModel):
    user_id: str
    email: str
    role: Role
    since: datetime


class Members(BaseModel):
    items: list[Member]
    next_cursor: str | None = None


class ListMembers(TenantRef):
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=200)


class RoleChange(Strict):
    """The body of `PATCH tenants/{slug}/members/{user_id}`."""

    role: Role


class ChangeRole(TenantRef):
    user_id: str = Field(min_length=1, max_length=100)
    role: Role


class RemoveMember(TenantRef):
    user_id: str = Field(min_length=1, max_length=100)


class NewInvitation(Strict):
    """The body of `POST tenants/{slug}/invitations`."""

    email: EmailStr = Field(max_length=EMAIL_MAX)
    role: Role = Role.MEMBER


class CreateInvitation(TenantRef):
    email: EmailStr = Field(max_length=EMAIL_MAX)
    role: Role = Role.MEMBER


class Invitation(BaseModel):
    id: str
    tenant_id: str
    email: str
    role: Role
    expires_at: datetime


class AcceptInvitation(Strict):
    token: str = Field(min_length=1, max_length=TOKEN_MAX, repr=False)


# -- between services (not routed by the gateway) -----------------------------------------------
class MembershipQuery(TenantRef):
    user_id: str = Field(min_length=1, max_length=100)


class Membership(BaseModel):
    tenant_id: str
    user_id: str
    role: Role | None = Field(description="null when the user is not a member")


class AddOwner(TenantRef):
    """Tenancy makes a tenant's creator its owner while provisioning it (idempotent)."""

    user_id: str = Field(min_length=1, max_length=100)

"""Every event type, its version and its typed payload: defined once, here.

The NATS subject of an event is its type. Adding an event: declare its payload model with
`@event("thing.happened", version=1, owner="service", summary="...")`.

Changing a payload: bump `version` and give an upcaster from the previous version,
`upcasters={1: v1_to_v2}` (each one turns a version-n payload into a version n+1 one), so that
during a rolling deploy the new code still reads what the old code writes. Events of a version
newer than this code knows are not invalid: consumers hand them back for an upgraded replica.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field

M = TypeVar("M", bound=type[BaseModel])

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the payload of one version into the payload of the next."""


class NoUpcaster(LookupError):
    """No chain of upcasters leads from a version to the current one."""


@dataclass(frozen=True)
class EventType:
    type: str
    version: int
    model: type[BaseModel]
    owner: str
    summary: str
    upcasters: Mapping[int, Upcaster] = field(default_factory=dict)  # from version n to n + 1

    def upcast(self, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """A payload of an older `version` as one of the current version (not yet validated)."""
        for step in range(version, self.version):
            upcaster = self.upcasters.get(step)
            if upcaster is None:
                raise NoUpcaster(f"{self.type}: no upcaster from version {step}")
            data = upcaster(data)
        return data


CATALOGUE: dict[str, EventType] = {}


def event(
    type_: str,
    *,
    version: int,
    owner: str,
    summary: str,
    upcasters: Mapping[int, Upcaster] | None = None,
) -> Callable[[M], M]:
    upcasters = dict(upcasters or {})
    # Steps must join up: from the oldest version still read, one at a time, to the current.
    steps = sorted(upcasters)
    if steps and (steps[0] < 1 or steps != list(range(steps[0], version))):
        raise ValueError(
            f"{type_}: upcasters must go from each older version (1 or more) to the next, "
            f"up to {version}; got from {sorted(upcasters)}"
        )

    def register(model: M) -> M:
        if type_ in CATALOGUE:
            raise ValueError(f"event type {type_!r} declared twice")
        CATALOGUE[type_] = EventType(type_, version, model, owner, summary, upcasters)
        return model

    return register


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ROLE = Field(pattern=r"^(owner|admin|member)$")


# -- identity ------------------------------------------------------------------------------------
@event("user.registered", version=1, owner="identity", summary="A user signed up.")
class UserRegistered(Payload):
    user_id: str
    email: EmailStr
    ip_address: str | None = None


@event(
    "user.duplicate_registration",
    version=1,
    owner="identity",
    summary="Someone tried to sign up with the address of an existing account (its owner is told "
    "by mail; the caller got the same answer as a new sign-up).",
)
class UserDuplicateRegistration(Payload):
    user_id: str
    ip_address: str | None = None


@event(
    "user.email_verified",
    version=1,
    owner="identity",
    summary="A user confirmed their email address.",
)
class UserEmailVerified(Payload):
    user_id: str


@event("user.logged_in", version=1, owner="identity", summary="A user logged in.")
class UserLoggedIn(Payload):
    user_id: str
    ip_address: str | None = None


@event("user.login_failed", version=1, owner="identity", summary="A login attempt failed.")
class UserLoginFailed(Payload):
    email: str
    reason: str
    ip_address: str | None = None


@event(
    "user.account_locked",
    version=1,
    owner="identity",
    summary="Too many failed logins: the account refuses logins until locked_until.",
)
class UserAccountLocked(Payload):
    user_id: str
    locked_until: datetime
    ip_address: str | None = None


@event(
    "user.logged_out",
    version=1,
    owner="identity",
    summary="A user logged out: one session (family), or every session when everywhere is true.",
)
class UserLoggedOut(Payload):
    user_id: str
    family_id: str | None = None
    everywhere: bool = False


@event(
    "user.password_reset_requested",
    version=1,
    owner="identity",
    summary="A password reset was asked for an existing account (identity mails it a link).",
)
class UserPasswordResetRequested(Payload):
    user_id: str
    ip_address: str | None = None


@event(
    "user.password_reset",
    version=1,
    owner="identity",
    summary="A user reset their password; every session of theirs was revoked.",
)
class UserPasswordReset(Payload):
    user_id: str
    ip_address: str | None = None


@event(
    "user.platform_admin_granted",
    version=1,
    owner="identity",
    summary="An operator made a user a platform administrator.",
)
class UserPlatformAdminGranted(Payload):
    user_id: str


@event(
    "user.platform_admin_revoked",
    version=1,
    owner="identity",
    summary="An operator took a user's platform administrator flag away.",
)
class UserPlatformAdminRevoked(Payload):
    user_id: str


@event(
    "auth.refresh_token_reused",
    version=1,
    owner="identity",
    summary="A rotated refresh token was used again; its whole family was revoked.",
)
class RefreshTokenReused(Payload):
    user_id: str
    family_id: str
    ip_address: str | None = None


@event(
    "auth.signing_key_rotated",
    version=1,
    owner="identity",
    summary="A new key signs access tokens; the previous one stays published until its tokens "
    "have expired.",
)
class SigningKeyRotated(Payload):
    kid: str
    previous_kid: str | None = None


@event(
    "membership.added", version=1, owner="identity", summary="A user became a member of a tenant."
)
class MembershipAdded(Payload):
    tenant_id: str
    user_id: str
    role: str = ROLE


@event("membership.role_changed", version=1, owner="identity", summary="A member's role changed.")
class MembershipRoleChanged(Payload):
    tenant_id: str
    user_id: str
    old_role: str = ROLE
    new_role: str = ROLE


@event("membership.removed", version=1, owner="identity", summary="A member left or was removed.")
class MembershipRemoved(Payload):
    tenant_id: str
    user_id: str


@event(
    "invitation.created", version=1, owner="identity", summary="Someone was invited to a tenant."
)
class InvitationCreated(Payload):
    invitation_id: str
    tenant_id: str
    email: EmailStr
    role: str = ROLE


@event("invitation.accepted", version=1, owner="identity", summary="An invitation was accepted.")
class InvitationAccepted(Payload):
    invitation_id: str
    tenant_id: str
    user_id: str


# -- tenancy -------------------------------------------------------------------------------------
@event(
    "tenant.provisioning_started",
    version=1,
    owner="tenancy",
    summary="Provisioning of a tenant began.",
)
class TenantProvisioningStarted(Payload):
    tenant_id: str
    slug: str
    name: str


@event(
    "tenant.created",
    version=1,
    owner="tenancy",
    summary="A tenant is provisioned and ready for use. Published once per tenant.",
)
class TenantCreated(Payload):
    tenant_id: str
    slug: str
    name: str
    schema_name: str


@event(
    "tenant.provisioning_failed",
    version=1,
    owner="tenancy",
    summary="Provisioning of a tenant failed.",
)
class TenantProvisioningFailed(Payload):
    tenant_id: str
    slug: str
    error: str


@event(
    "tenant.deleted", version=1, owner="tenancy", summary="A tenant and its schema were deleted."
)
class TenantDeleted(Payload):
    tenant_id: str
    slug: str


@event(
    "tenant.suspended",
    version=1,
    owner="tenancy",
    summary="An operator suspended a tenant: its data is refused to everyone until it is resumed.",
)
class TenantSuspended(Payload):
    tenant_id: str
    slug: str


@event(
    "tenant.resumed",
    version=1,
    owner="tenancy",
    summary="An operator resumed a suspended tenant: it is ready again.",
)
class TenantResumed(Payload):
    tenant_id: str
    slug: str


@event(
    "project.created", version=1, owner="tenancy", summary="A project was created inside a tenant."
)
class ProjectCreated(Payload):
    tenant_id: str
    project_id: str
    name: str


@event(
    "project.updated",
    version=1,
    owner="tenancy",
    summary="A project's name or description changed; `changed` names the fields.",
)
class ProjectUpdated(Payload):
    tenant_id: str
    project_id: str
    name: str
    changed: list[str]


@event("project.deleted", version=1, owner="tenancy", summary="A project was deleted.")
class ProjectDeleted(Payload):
    tenant_id: str
    project_id: str


def subject_prefixes() -> list[str]:
    """The stream's subjects: one wildcard per first token of the catalogue's types."""
    return sorted({t.split(".", 1)[0] + ".>" for t in CATALOGUE})

"""Which limits a request counts against: the policy table and the route classes (pure rules).

Every request counts against one or two limits, each a policy applied to a partition:

    route                                        limits (policy: partition)
    POST auth/register, auth/login,              auth-address: client address
         auth/password-reset/request                 + auth-account: the email of the body
    POST auth/password-reset/confirm             auth-address: client address
    any other, with a valid access token         user: user id   (+ tenant: slug, under tenants/{slug})
    any other, without one                       anonymous: client address

A request is allowed only if every one of its limits allows it, and then counts against all of
them (one atomic check, `saas.gateway.ratelimit.redis`). An invalid token counts as no token, so
guessing tokens is limited per address. IPv6 clients are counted per /64, which one subscriber
usually holds whole, so they cannot dodge the limit by rotating addresses within it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Protocol

from saas.gateway.routes import API_PREFIX

PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(?:(\d+(?:\.\d+)?)\s*s?|(second|minute|hour|day))\s*$")

AUTH_ROUTES = frozenset(
    {
        ("POST", f"{API_PREFIX}/auth/register"),
        ("POST", f"{API_PREFIX}/auth/login"),
        ("POST", f"{API_PREFIX}/auth/password-reset/request"),
        ("POST", f"{API_PREFIX}/auth/password-reset/confirm"),
    }
)
# The auth routes whose body names an account (`email`), which is limited on its own too.
ACCOUNT_ROUTES = frozenset(r for r in AUTH_ROUTES if not r[1].endswith("/confirm"))
_TENANT_PATH = f"{API_PREFIX}/tenants/"


@dataclass(frozen=True)
class Rate:
    """`limit` requests per `period` seconds, all of which may come at once (the burst)."""

    limit: int
    period: float

    @property
    def interval(self) -> float:
        """Seconds one request's share of the quota takes to come back."""
        return self.period / self.limit

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


def parse_rate(text: str) -> Rate:
    """`"300/minute"`, `"20/60"` or `"20/60s"`: a count per period."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a rate: write <count>/<seconds> or <count>/minute")
    limit = int(match.group(1))
    period = PERIODS[match.group(3)] if match.group(3) else float(match.group(2))
    if limit < 1 or period <= 0:
        raise ValueError(f"{text!r}: the count and the period must be positive")
    return Rate(limit, period)


@dataclass(frozen=True)
class Policy:
    name: str  # as sent in RateLimit-Policy
    rate: Rate
    auth: bool = False  # auth routes' policies have their own outage fallback


@dataclass(frozen=True)
class Limit:
    """A policy applied to one partition (an address, a user, a tenant, an account)."""

    policy: Policy
    partition: str

    @property
    def key(self) -> str:
        return f"rl:{self.policy.name}:{self.partition}"


class _RateSettings(Protocol):
    rate_limit_anonymous: str
    rate_limit_user: str
    rate_limit_tenant: str
    rate_limit_auth_address: str
    rate_limit_auth_account: str


@dataclass(frozen=True)
class Policies:
    anonymous: Policy
    user: Policy
    tenant: Policy
    auth_address: Policy
    auth_account: Policy

    @classmethod
    def from_settings(cls, s: _RateSettings) -> Policies:
        return cls(
            anonymous=Policy("anonymous", parse_rate(s.rate_limit_anonymous)),
            user=Policy("user", parse_rate(s.rate_limit_user)),
            tenant=Policy("tenant", parse_rate(s.rate_limit_tenant)),
            auth_address=Policy("auth-address", parse_rate(s.rate_limit_auth_address), auth=True),
            auth_account=Policy("auth-account", parse_rate(s.rate_limit_auth_account), auth=True),
        )


def is_auth_route(method: str, path: str) -> bool:
    return (method, path) in AUTH_ROUTES


def names_an_account(method: str, path: str) -> bool:
    return (method, path) in ACCOUNT_ROUTES


def limits_for(
    policies: Policies,
    *,
    method: str,
    path: str,
    address: str,
    user_id: str | None = None,
    email: str | None = None,
) -> list[Limit]:
    """The limits one request counts against (see the table above)."""
    if is_auth_route(method, path):
        limits = [Limit(policies.auth_address, address_partition(address))]
        if email is not None and names_an_account(method, path):
            limits.append(Limit(policies.auth_account, account_partition(email)))
        return limits
    if user_id is None:
        return [Limit(policies.anonymous, address_partition(address))]
    limits = [Limit(policies.user, user_id)]
    slug = tenant_of(path)
    if slug is not None:
        limits.append(Limit(policies.tenant, slug))
    return limits


def tenant_of(path: str) -> str | None:
    """The slug of a tenant-scoped path (`/api/v1/tenants/{slug}` and below)."""
    if not path.startswith(_TENANT_PATH):
        return None
    slug = path[len(_TENANT_PATH) :].split("/", 1)[0]
    return slug.lower() if 0 < len(slug) <= 100 else None


def address_partition(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address by its /64 (one subscriber's usual share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def account_partition(email: str) -> str:
    """An email address as identity stores it (trimmed, lowercased), hashed: the limit follows
    the account whatever the case or spaces, and Redis never holds the address itself."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]

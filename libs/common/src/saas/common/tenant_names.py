"""Tenant slugs, the schema names derived from them, and how any schema name reaches SQL.

A slug is what users type; a schema name is what reaches SQL. Both are validated wherever they
are used, so nothing user-typed reaches SQL text unchecked. Every schema name that is written
into SQL text (a tenant's, or the one a service owns: `identity`, `public`, `audit`) goes through
`quote_schema`, the one place that checks an identifier and quotes it.
"""

from __future__ import annotations

import re

SLUG_MIN, SLUG_MAX = 3, 40
SCHEMA_PREFIX = "tenant_"
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SCHEMA_RE = re.compile(r"^tenant_[a-z0-9]+(?:_[a-z0-9]+)*$")
# Any schema we name ourselves: lowercase, unquoted-identifier safe, within PostgreSQL's 63 bytes.
_IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

RESERVED_SLUGS = frozenset(
    {
        "admin",
        "api",
        "app",
        "audit",
        "auth",
        "billing",
        "default",
        "docs",
        "help",
        "identity",
        "internal",
        "login",
        "logout",
        "me",
        "new",
        "null",
        "pg-catalog",
        "postgres",
        "public",
        "root",
        "settings",
        "signup",
        "static",
        "status",
        "support",
        "system",
        "tenancy",
        "tenant",
        "tenants",
        "template",  # tenant_template is the schema new tenants are cloned from
        "test",
        "www",
    }
)


class InvalidSlugError(ValueError):
    pass


def validate_slug(slug: str) -> str:
    """Return the slug if it is acceptable, else raise `InvalidSlugError` saying why."""
    if not isinstance(slug, str):
        raise InvalidSlugError("slug must be a string")
    if not SLUG_MIN <= len(slug) <= SLUG_MAX:
        raise InvalidSlugError(f"slug must be {SLUG_MIN} to {SLUG_MAX} characters long")
    if not _SLUG_RE.fullmatch(slug):
        raise InvalidSlugError(
            "slug may contain only lowercase letters, digits and single hyphens, "
            "and must start and end with a letter or digit"
        )
    if slug in RESERVED_SLUGS:
        raise InvalidSlugError(f"slug {slug!r} is reserved")
    return slug


def schema_for(slug: str) -> str:
    """The PostgreSQL schema of a tenant: `tenant_` + slug with `-` replaced by `_`."""
    return validate_schema_name(SCHEMA_PREFIX + validate_slug(slug).replace("-", "_"))


def validate_schema_name(name: str) -> str:
    """Check a tenant schema name again right before it is used in SQL."""
    if not isinstance(name, str) or len(name) > 63 or not _SCHEMA_RE.fullmatch(name):
        raise InvalidSlugError(f"not a tenant schema name: {name!r}")
    return name


def validate_identifier(name: str) -> str:
    """Check a schema name of any kind (owner or tenant) before it is written into SQL."""
    if not isinstance(name, str) or not _IDENTIFIER_RE.fullmatch(name):
        raise InvalidSlugError(f"not a schema name: {name!r}")
    return name


def quote_schema(name: str) -> str:
    """A validated schema name as a quoted SQL identifier: the one way a schema reaches SQL text."""
    return '"' + validate_identifier(name) + '"'

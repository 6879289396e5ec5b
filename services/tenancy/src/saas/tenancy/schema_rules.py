"""What a tenant schema's version means, without the database: pure, and light enough for
`saas tenants migrate-all` to import before it knows whether anything is to be done."""

from __future__ import annotations

TEMPLATE = "tenant_template"  # the schema new tenants are cloned from (`saas.tenancy.schemas`)


def is_behind(version: str | None, revisions: list[str]) -> bool:
    """Whether a schema at `version` lacks migrations of `revisions` (oldest first). A version
    this code does not know is newer than it (a later release cloned it): not behind."""
    if version is None:
        return True
    return version in revisions[:-1]

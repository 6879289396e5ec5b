"""What a new tenant's schema starts with, besides its tables: seeded by provisioning (and never
again, so a tenant's own changes stay). Product teams add their defaults here."""

from __future__ import annotations

from typing import Any

DEFAULT_SETTINGS: dict[str, Any] = {
    "timezone": "UTC",
    "locale": "en",
    "projects.page_size": 20,
}

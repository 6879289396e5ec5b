"""The local stack's database logins: the same roles as production, passwords kept under the root.

`set_up_logins` does what production's operators do once: create the logins
(`saas.common.db_roles.bootstrap_roles`, as the superuser). The release steps (`saas migrate`'s
`release`) then run as the migration login.
Every login, the superuser included, needs its password (the embedded server uses scram), so a
process holding one login's URL cannot act as another.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from saas.common.db_roles import LOGINS, MIGRATE, bootstrap_roles, login_url

SUPERUSER = "postgres"
PASSWORDS_FILE = Path("secrets") / "postgres.json"


def passwords(root: Path) -> dict[str, str]:
    """The superuser's and every login's password, generated on first use and kept (mode 0600)."""
    path = root / PASSWORDS_FILE
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = {SUPERUSER, *(login.name for login in LOGINS)} - known.keys()
    if missing:
        known |= {name: secrets.token_urlsafe(24) for name in sorted(missing)}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = path.with_suffix(".tmp")
        fresh.write_text(json.dumps(known, indent=2, sort_keys=True))
        fresh.chmod(0o600)
        os.replace(fresh, path)
    return known


@dataclass(frozen=True)
class DatabaseLogins:
    admin_url: str
    urls: dict[str, str]  # login name -> its URL

    def url(self, login: str) -> str:
        return self.urls[login]

    def env(self) -> dict[str, str]:
        """For `.devstack/env` and tools: DATABASE_URL is the migration login (`saas db upgrade`,
        `alembic`), DATABASE_ADMIN_URL the superuser, and each login's <KEY>_DATABASE_URL as the
        Kubernetes Secret names it."""
        env = {login.url_env: self.urls[login.name] for login in LOGINS}
        return env | {"DATABASE_URL": self.urls[MIGRATE.name], "DATABASE_ADMIN_URL": self.admin_url}


def set_up_logins(admin_url: str, root: Path) -> DatabaseLogins:
    """Create the logins through `admin_url` (idempotent); their URLs, by login name."""
    known = passwords(root)
    asyncio.run(bootstrap_roles(admin_url, {login.name: known[login.name] for login in LOGINS}))
    return DatabaseLogins(
        admin_url,
        {login.name: login_url(admin_url, login.name, known[login.name]) for login in LOGINS},
    )

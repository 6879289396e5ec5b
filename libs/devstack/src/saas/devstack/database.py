"""The local stack's database logins: the same roles as production, passwords kept under the root.

`set_up_logins` does what production's operators do once: create the logins
(`saas.common.db_roles.bootstrap_roles`, as the superuser). The release steps (`saas migrate`'s
`release`) then run as the migration login.
Every login, the superuser included, needs its password (the embedded server uses scram), so a
process holding one login's URL cannot act as another.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from saas.common.db_roles import LOGINS, MIGRATE, bootstrap_roles, login_url
from saas.devstack.secrets import kept_passwords

SUPERUSER = "postgres"


def passwords(root: Path) -> dict[str, str]:
    """The superuser's and every login's password, generated on first use and kept."""
    return kept_passwords(root, "postgres", [SUPERUSER, *(login.name for login in LOGINS)])


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

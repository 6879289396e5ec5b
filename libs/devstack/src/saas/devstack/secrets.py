"""The local stack's passwords: generated on first use, kept under the root (mode 0600)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path


def kept_passwords(root: Path, server: str, users: Iterable[str]) -> dict[str, str]:
    """A password for each of `users` on `server`, the same on every start."""
    path = root / "secrets" / f"{server}.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = set(users) - known.keys()
    if missing:
        known |= {name: secrets.token_urlsafe(24) for name in sorted(missing)}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = path.with_suffix(".tmp")
        fresh.write_text(json.dumps(known, indent=2, sort_keys=True))
        fresh.chmod(0o600)
        os.replace(fresh, path)
    return known

"""The tokens identity hands out, as pure functions.

- Access tokens: JWTs signed with EdDSA under the active key's `kid`, verified anywhere with
  `saas.common.tokens.TokenVerifier` and the JWKS.
- Refresh tokens: 32 random bytes, url-safe; only their SHA-256 is stored.
- Single-use tokens sent by mail (email verification, password reset, invitations):
  `<id>.<secret>`. The id finds the row; the secret's SHA-256 is compared in constant time, so
  neither a database index nor a string comparison tells an attacker how close a guess came.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saas.common.tokens import ALGORITHMS

REFRESH_TOKEN_BYTES = 32
SECRET_BYTES = 32


@dataclass(frozen=True)
class AccessToken:
    token: str
    token_id: str
    expires_in: int


def sign_access_token(
    *,
    key: Ed25519PrivateKey,
    kid: str,
    issuer: str,
    audience: str,
    user_id: str,
    session_id: str,
    platform_admin: bool,
    now: int,
    ttl: int,
) -> AccessToken:
    token_id = uuid.uuid4().hex
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": user_id,
        "iat": now,
        "exp": now + ttl,
        "jti": token_id,
        "sid": session_id,
        "adm": platform_admin,
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHMS[0], headers={"kid": kid, "typ": "JWT"})
    return AccessToken(token, token_id, ttl)


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def new_refresh_token() -> tuple[str, bytes]:
    """A refresh token and the hash to store (the token itself is never stored)."""
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    return token, digest(token)


def new_single_use_token(token_id: uuid.UUID) -> tuple[str, bytes]:
    """`<id>.<secret>` for the mail, and the secret's hash for the row with that id."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return f"{token_id.hex}.{secret}", digest(secret)


def split_single_use_token(token: str) -> tuple[uuid.UUID, str] | None:
    """The id and secret of a token this service issued, or None for anything else."""
    token_id, dot, secret = token.strip().partition(".")
    if not dot or len(token_id) != 32 or not secret or len(secret) > 100:
        return None
    try:
        return uuid.UUID(hex=token_id), secret
    except ValueError:
        return None


def secret_matches(secret: str, stored_hash: bytes | None) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return stored_hash is not None and hmac.compare_digest(digest(secret), stored_hash)

"""Signing keys: Ed25519 key pairs kept in the database, private halves sealed at rest.

- A key's private half is sealed with AES-256-GCM under a key derived from `JWT_SECRET_KEY`
  through HKDF-SHA256, with the kid as associated data: a sealed key copied onto another row, or
  read with another secret, does not open.
- One key is active (signs) at a time; the database enforces it with a unique partial index, and
  creation and rotation take an advisory lock, so replicas starting together create one key.
- Rotation retires the active key (its private half is wiped: it never signs again) and creates a
  new one. A retired key stays in the JWKS until every token it signed has expired
  (retired_at + ACCESS_TOKEN_TTL + JWT_LEEWAY + the signer's cache), then leaves it.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.db import Database
from saas.identity.store.tables import signing_keys

ALGORITHM = "EdDSA"
NONCE_BYTES = 12
HKDF_INFO = b"saas identity: signing keys at rest, v1"
# How long a replica may keep signing with the key it loaded: within the verifiers' leeway, so a
# token signed just after a rotation elsewhere still verifies for its whole life.
SIGNER_CACHE_SECONDS = 10.0
LOCK_KEY = "identity.signing_keys"


class KeySealError(Exception):
    """A sealed private key does not open with this secret (wrong JWT_SECRET_KEY?)."""


# -- pure ----------------------------------------------------------------------------------------
def sealing_key(secret: str) -> bytes:
    """The AES-256 key that seals private keys, derived from JWT_SECRET_KEY."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
        secret.encode()
    )


def seal(sealing: bytes, kid: str, private_raw: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(sealing).encrypt(nonce, private_raw, kid.encode())


def unseal(sealing: bytes, kid: str, sealed: bytes) -> bytes:
    try:
        return AESGCM(sealing).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], kid.encode())
    except (InvalidTag, ValueError):
        raise KeySealError(f"signing key {kid} does not open with this JWT_SECRET_KEY") from None


def new_key_pair() -> tuple[str, bytes, bytes]:
    """A fresh kid, private half and public half (raw 32 bytes each)."""
    private = Ed25519PrivateKey.generate()
    private_raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public_raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return secrets.token_hex(8), private_raw, public_raw


def public_jwk(kid: str, public_raw: bytes) -> dict[str, str]:
    x = base64.urlsafe_b64encode(public_raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALGORITHM, "use": "sig"}


def still_published(retired_at: datetime | None, now: datetime, grace: timedelta) -> bool:
    """Whether a key belongs in the JWKS: active, or retired less than `grace` ago."""
    return retired_at is None or now < retired_at + grace


def publication_grace(access_ttl: float, leeway: float) -> timedelta:
    """How long a retired key stays published: until the last token it signed has expired."""
    return timedelta(seconds=access_ttl + leeway + SIGNER_CACHE_SECONDS)


# -- the key ring (database) ---------------------------------------------------------------------
@dataclass(frozen=True)
class Signer:
    kid: str
    key: Ed25519PrivateKey
    loaded_at: float


class KeyRing:
    """The signing keys of this service: the active one to sign, the published ones to verify."""

    def __init__(self, db: Database, secret: str, *, access_ttl: float, leeway: float) -> None:
        self.db = db
        self._sealing = sealing_key(secret)
        self.grace = publication_grace(access_ttl, leeway)
        self._signer: Signer | None = None
        self._jwks: tuple[float, dict[str, Any]] | None = None

    async def ensure_active(self) -> str:
        """The active key's kid, creating the first key if there is none."""
        async with self.db.session() as session:
            await _lock(session)
            kid = await _active_kid(session)
            if kid is None:
                kid = await self._insert_new(session)
        return kid

    async def rotate(self, session: AsyncSession) -> tuple[str, str | None]:
        """Retire the active key and make a new one; returns (new kid, previous kid)."""
        await _lock(session)
        previous = await _active_kid(session)
        if previous is not None:
            await session.execute(
                sa.update(signing_keys)
                .where(signing_keys.c.kid == previous)
                .values(retired_at=sa.func.now(), private_key=None)
            )
        kid = await self._insert_new(session)
        self._signer, self._jwks = None, None
        return kid, previous

    async def _insert_new(self, session: AsyncSession) -> str:
        kid, private_raw, public_raw = new_key_pair()
        await session.execute(
            sa.insert(signing_keys).values(
                kid=kid,
                algorithm=ALGORITHM,
                public_key=public_raw,
                private_key=seal(self._sealing, kid, private_raw),
            )
        )
        return kid

    async def signer(self) -> Signer:
        """The active key, reloaded at most every SIGNER_CACHE_SECONDS (rotation elsewhere)."""
        signer = self._signer
        if signer is not None and time.monotonic() - signer.loaded_at < SIGNER_CACHE_SECONDS:
            return signer
        async with self.db.session() as session:
            row = (
                await session.execute(
                    sa.select(signing_keys.c.kid, signing_keys.c.private_key).where(
                        signing_keys.c.retired_at.is_(None)
                    )
                )
            ).one_or_none()
        if row is None:  # deleted under us: make one, as at first start
            await self.ensure_active()
            return await self.signer()
        if signer is None or signer.kid != row.kid:
            key = Ed25519PrivateKey.from_private_bytes(
                unseal(self._sealing, row.kid, row.private_key)
            )
            signer = Signer(row.kid, key, time.monotonic())
        else:
            signer = Signer(signer.kid, signer.key, time.monotonic())
        self._signer = signer
        return signer

    async def jwks(self) -> dict[str, Any]:
        """The published public keys (cached briefly: every verifier asks for them)."""
        cached = self._jwks
        if cached is not None and time.monotonic() - cached[0] < SIGNER_CACHE_SECONDS:
            return cached[1]
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    sa.select(
                        signing_keys.c.kid,
                        signing_keys.c.public_key,
                        signing_keys.c.retired_at,
                        sa.func.now().label("now"),
                    ).order_by(signing_keys.c.created_at.desc())
                )
            ).all()
        document = {
            "keys": [
                public_jwk(r.kid, r.public_key)
                for r in rows
                if still_published(r.retired_at, r.now, self.grace)
            ]
        }
        self._jwks = (time.monotonic(), document)
        return document

    def forget(self) -> None:
        self._signer, self._jwks = None, None


async def _lock(session: AsyncSession) -> None:
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(LOCK_KEY))))


async def _active_kid(session: AsyncSession) -> str | None:
    return (
        await session.execute(
            sa.select(signing_keys.c.kid).where(signing_keys.c.retired_at.is_(None))
        )
    ).scalar_one_or_none()


def utcnow() -> datetime:
    return datetime.now(UTC)

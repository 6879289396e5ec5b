"""Signing keys for tests: a JWKS as identity publishes it, and a signer for each key."""

from __future__ import annotations

import base64
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saas.common.tokens import TokenPolicy

POLICY = TokenPolicy(issuer="saas-identity", audience="saas-api", leeway=5)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Keys:
    """A JWKS of Ed25519 keys, as identity would publish it, and a signer for each key."""

    def __init__(self) -> None:
        self.private: dict[str, Ed25519PrivateKey] = {}
        self.fetches = 0

    def add(self, kid: str | None = None) -> str:
        kid = kid or uuid.uuid4().hex
        self.private[kid] = Ed25519PrivateKey.generate()
        return kid

    def public_jwk(self, kid: str) -> dict:
        raw = (
            self.private[kid]
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64(raw),
            "kid": kid,
            "alg": "EdDSA",
            "use": "sig",
        }

    async def jwks(self) -> dict:
        self.fetches += 1
        return {"keys": [self.public_jwk(kid) for kid in self.private]}

    def sign(self, kid: str, headers: dict | None = None, **overrides) -> str:
        now = int(time.time())
        claims = {
            "iss": POLICY.issuer,
            "aud": POLICY.audience,
            "sub": "user-1",
            "iat": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
            "sid": "family-1",
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(
            claims, self.private[kid], algorithm="EdDSA", headers={"kid": kid, **(headers or {})}
        )

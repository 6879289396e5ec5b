"""Signing keys at rest and in the JWKS; the tokens identity signs and hands out."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saas.common.tokens import TokenPolicy, TokenVerifier
from saas.identity.keys import (
    KeySealError,
    new_key_pair,
    public_jwk,
    publication_grace,
    seal,
    sealing_key,
    still_published,
    unseal,
)
from saas.identity.tokens import (
    new_refresh_token,
    new_single_use_token,
    secret_matches,
    sign_access_token,
    split_single_use_token,
)


def test_a_sealed_private_key_opens_only_with_its_secret_and_its_kid():
    kid, private, _ = new_key_pair()
    sealed = seal(sealing_key("a" * 40), kid, private)
    assert private not in sealed
    assert unseal(sealing_key("a" * 40), kid, sealed) == private
    with pytest.raises(KeySealError):
        unseal(sealing_key("b" * 40), kid, sealed)
    with pytest.raises(KeySealError):
        unseal(sealing_key("a" * 40), "another-kid", sealed)  # moved onto another row
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(KeySealError):
        unseal(sealing_key("a" * 40), kid, tampered)


def test_a_retired_key_is_published_until_its_last_token_has_expired():
    grace = publication_grace(access_ttl=900, leeway=30)
    retired = datetime(2026, 1, 1, tzinfo=UTC)
    assert still_published(None, retired, grace)
    assert still_published(retired, retired + timedelta(seconds=930), grace)
    assert not still_published(retired, retired + grace, grace)


async def test_signed_access_tokens_verify_with_the_published_key():
    kid, private, public = new_key_pair()
    token = sign_access_token(
        key=Ed25519PrivateKey.from_private_bytes(private),
        kid=kid,
        issuer="saas-identity",
        audience="saas-api",
        user_id="u-1",
        session_id="f-1",
        platform_admin=False,
        now=int(time.time()),
        ttl=900,
    )

    async def jwks():
        return {"keys": [public_jwk(kid, public)]}

    claims = await TokenVerifier(jwks, TokenPolicy("saas-identity", "saas-api")).verify(token.token)
    assert (claims.user_id, claims.session_id, claims.platform_admin) == ("u-1", "f-1", False)
    assert claims.expires_at - time.time() == pytest.approx(900, abs=2)


def test_refresh_tokens_are_32_random_bytes_stored_only_as_a_hash():
    token, stored = new_refresh_token()
    assert len(token) == 43 and token.encode() not in stored and len(stored) == 32
    assert new_refresh_token()[0] != token


def test_single_use_tokens_match_only_their_own_secret():
    token_id = uuid.uuid4()
    token, stored = new_single_use_token(token_id)
    parsed = split_single_use_token(token)
    assert parsed is not None and parsed[0] == token_id
    assert secret_matches(parsed[1], stored)
    assert not secret_matches(parsed[1] + "x", stored)
    assert not secret_matches(parsed[1], None)


@pytest.mark.parametrize(
    "token", ["", "nodot", "a.b", "." * 40, "g" * 32 + ".secret", uuid.uuid4().hex + ".", "x" * 300]
)
def test_anything_else_is_not_a_single_use_token(token):
    assert split_single_use_token(token) is None

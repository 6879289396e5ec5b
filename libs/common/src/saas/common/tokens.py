"""Access tokens: what a valid one is, checked the same way by the gateway and by every service.

Access tokens are JWTs that identity signs with EdDSA (Ed25519) under a `kid`; anyone verifies them
with identity's JWKS. Verification trusts nothing in a token that the token cannot prove:

- the algorithm comes from an allow-list here (EdDSA), never from the token (no `none`, no HMAC
  with a public key as the secret);
- the key comes from the JWKS, chosen by `kid` as a plain lookup (a `kid` is never a path, a URL
  or a query), and a token that brings its own key material (`jwk`, `jku`, `x5u`, `x5c`) is
  refused outright;
- `iss`, `aud`, `sub`, `iat`, `exp`, `jti` are required, with a small leeway for clocks;
- an oversized token is refused before it is parsed.

A token that verified is remembered until it expires (at most `cache_size` of them), keyed by
the whole token rather than its `jti`: a forgery may carry a genuine `jti`, never a genuine
signature. So a client's later requests cost a dictionary lookup instead of an EdDSA check.
`cache_size=0` turns the cache off: every call checks the signature and the claims.

An unknown `kid` refreshes the JWKS (a key rotated in since the last fetch), at most once every
`min_refresh_interval` seconds however many unknown kids arrive, so a flood of random kids cannot
hammer identity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import PyJWTError

REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti")
ALGORITHMS = ("EdDSA",)
FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c")

FetchJwks = Callable[[], Awaitable[dict[str, Any]]]
# Where the keys are published: identity answers `svc.identity.jwks`.
JWKS_SERVICE, JWKS_OPERATION = "identity", "jwks"


class InvalidToken(Exception):
    """A token that proves nothing; `reason` is a stable short code, safe to log."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str
    audience: str
    leeway: float = 30.0
    max_length: int = 8192


@dataclass(frozen=True)
class Claims:
    """What a verified access token says."""

    user_id: str
    token_id: str
    session_id: str | None
    platform_admin: bool
    expires_at: float
    raw: str  # the token itself, to forward to the services it is meant for


class TokenVerifier:
    def __init__(
        self,
        fetch_jwks: FetchJwks,
        policy: TokenPolicy,
        *,
        min_refresh_interval: float = 10.0,
        retry_after_failure: float = 1.0,
        cache_size: int = 10_000,
    ) -> None:
        self._fetch = fetch_jwks
        self.policy = policy
        self.min_refresh_interval = min_refresh_interval
        self.retry_after_failure = retry_after_failure
        self.cache_size = cache_size
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._fetching: asyncio.Task[None] | None = None
        self._failure: Exception | None = None
        self._failed_at = float("-inf")
        self._verified: dict[str, Claims] = {}

    async def verify(self, token: str) -> Claims:
        claims = self._verified.get(token)
        if claims is not None:
            if time.time() < claims.expires_at + self.policy.leeway:
                return claims
            self._verified.pop(token, None)
        claims = await self._verify(token)
        if self.cache_size <= 0:
            return claims
        if len(self._verified) >= self.cache_size:
            self._verified.pop(next(iter(self._verified)))  # the oldest
        self._verified[token] = claims
        return claims

    async def _verify(self, token: str) -> Claims:
        header = self._header(token)
        key = await self._key(header["kid"])
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=self.policy.audience,
                issuer=self.policy.issuer,
                leeway=self.policy.leeway,
                options={"require": list(REQUIRED_CLAIMS), "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("not_yet_valid") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong_audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong_issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken("missing_claim", exc.claim) from None
        except PyJWTError as exc:
            raise InvalidToken("invalid", type(exc).__name__) from None
        if not isinstance(payload.get("sub"), str) or not isinstance(payload.get("jti"), str):
            raise InvalidToken("invalid", "sub and jti must be strings")
        return Claims(
            user_id=payload["sub"],
            token_id=payload["jti"],
            session_id=payload.get("sid"),
            platform_admin=payload.get("adm") is True,
            expires_at=float(payload["exp"]),
            raw=token,
        )

    def _header(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise InvalidToken("malformed", "no token")
        if len(token) > self.policy.max_length:
            raise InvalidToken("too_large", f"over {self.policy.max_length} characters")
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise InvalidToken("malformed") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken("algorithm_not_allowed", str(header.get("alg"))[:20])
        if any(name in header for name in FORBIDDEN_HEADERS):
            raise InvalidToken("embedded_key", "tokens may not bring their own keys")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 100:
            raise InvalidToken("unknown_key", "no usable kid")
        return header

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is None:
            await self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown_key")
        return key

    async def _refresh(self) -> None:
        """Fetch the JWKS for a kid not in hand: at most once per `min_refresh_interval` after a
        fetch that worked (a flood of made-up kids costs one fetch), again `retry_after_failure`
        after one that failed (until then its error is the answer: the keys cannot be known, which
        is not the token's fault). Tokens that come while a fetch is under way wait for it and
        share its outcome, so a cold process under load refuses none of them."""
        fetching = self._fetching
        if fetching is None:
            now = time.monotonic()
            if self._failure is not None and now - self._failed_at < self.retry_after_failure:
                raise self._failure.with_traceback(None)
            if now - self._fetched_at < self.min_refresh_interval:
                return
            fetching = self._fetching = asyncio.get_running_loop().create_task(self._fetch_keys())
        await asyncio.shield(fetching)  # a waiter that gives up does not cancel the others' fetch
        if self._failure is not None:
            raise self._failure.with_traceback(None)

    async def _fetch_keys(self) -> None:
        try:
            keys = keys_from_jwks(await self._fetch())
        except Exception as exc:  # handed to every waiter by `_refresh`
            self._failure, self._failed_at = exc, time.monotonic()
        else:
            self._keys, self._failure, self._fetched_at = keys, None, time.monotonic()
        finally:
            self._fetching = None

    def use_source(self, fetch: FetchJwks) -> None:
        self._fetch = fetch
        self.forget_keys()

    def forget_keys(self) -> None:
        """Drop the cached keys and verified tokens (the next token fetches the JWKS again)."""
        self._keys.clear()
        self._verified.clear()
        self._fetched_at = float("-inf")
        self._failure = None


def keys_from_jwks(jwks: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS document, by kid (others are skipped, never trusted)."""
    keys: dict[str, jwt.PyJWK] = {}
    for entry in jwks.get("keys", []):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid, alg = entry.get("kid"), entry.get("alg")
        if not isinstance(kid, str) or alg not in ALGORITHMS:
            continue
        try:
            keys[kid] = jwt.PyJWK(entry, algorithm=alg)
        except PyJWTError:
            continue
    return keys

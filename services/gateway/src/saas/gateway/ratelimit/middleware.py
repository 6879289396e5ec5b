"""Every API request is counted before any route runs, in one round trip (`RateLimiter`).

It needs to know who is asking: the bearer token is verified here (verified tokens are cached
until they expire, `saas.common.tokens`) and the claims are left in the request's state for
`CurrentUser`, so a request verifies its token once. For the auth routes that name an account,
the body is read here for its `email` and handed on to the route untouched.
"""

from __future__ import annotations

import math

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saas.common.errors import ErrorCode
from saas.common.tokens import InvalidToken, TokenVerifier
from saas.gateway.problems import send_problem
from saas.gateway.ratelimit.gcra import retry_after_seconds
from saas.gateway.ratelimit.headers import rate_limit_headers
from saas.gateway.ratelimit.limiter import RateLimiter
from saas.gateway.ratelimit.policy import Policies, is_auth_route, limits_for, names_an_account


def bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a `receive` that gives it to the app as if unread."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            first: Message = message
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first
        return await receive()

    return first.get("body", b""), replay


def email_in(body: bytes) -> str | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    email = doc.get("email") if isinstance(doc, dict) else None
    return email if isinstance(email, str) and email.strip() else None


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        policies: Policies,
        verifier: TokenVerifier | None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.policies = policies
        self.verifier = verifier
        self.unavailable_retry = str(math.ceil(limiter.retry_interval)).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        address = scope["client"][0] if scope.get("client") else "unknown"
        auth = is_auth_route(method, path)
        email = user_id = None
        if auth and names_an_account(method, path):
            body, receive = await read_body(receive)
            email = email_in(body)
        elif not auth:
            user_id = await self._user(scope)
        limits = limits_for(
            self.policies, method=method, path=path, address=address, user_id=user_id, email=email
        )
        verdict = await self.limiter.check(limits, auth=auth)
        if verdict.unavailable:
            await send_problem(
                scope,
                send,
                ErrorCode.SERVICE_UNAVAILABLE,
                "rate limits cannot be checked right now; try again shortly",
                [(b"retry-after", self.unavailable_retry)],
            )
            return
        headers = rate_limit_headers(limits, verdict.decisions)
        if not verdict.allowed:
            seconds = retry_after_seconds(verdict.decisions)
            await send_problem(
                scope,
                send,
                ErrorCode.RATE_LIMITED,
                f"too many requests; try again in {seconds} s",
                headers,
            )
            return
        if not headers:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _user(self, scope: Scope) -> str | None:
        """The user a valid bearer token proves (their claims left for `CurrentUser`); None for
        no token or one that proves nothing: such requests count as anonymous."""
        token = bearer(scope)
        if token is None or self.verifier is None:
            return None
        try:
            claims = await self.verifier.verify(token)
        except InvalidToken:
            return None
        except Exception:  # the keys cannot be fetched: the route answers for that (503)
            return None
        scope.setdefault("state", {})["claims"] = claims
        return claims.user_id

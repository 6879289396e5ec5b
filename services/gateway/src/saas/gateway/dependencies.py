"""Route dependencies as `Annotated` aliases, so route signatures read like sentences.

    async def me(user: CurrentUser, identity: Identity) -> User

`CurrentUser` authenticates the bearer token (a 401 problem with `WWW-Authenticate: Bearer`
otherwise); `Identity` and `Tenancy` call those services on behalf of this request, forwarding its
id, the client's address and, when the route is authenticated, the token itself, which every
service verifies again (`RequestContext.user`): nothing the gateway says is taken on trust.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from saas.common.bus import BusClient
from saas.common.contracts.tenancy import ResolveTenant, TenantInfo
from saas.common.errors import ErrorCode, ServiceError
from saas.common.process import ServiceProcess
from saas.common.tokens import Claims, InvalidToken
from saas.gateway.settings import GatewaySettings

T = TypeVar("T", bound=BaseModel)


def get_process(request: Request) -> ServiceProcess:
    return request.app.state.process


# Dependencies are `async def` even when they await nothing: FastAPI runs a plain `def`
# dependency in a worker thread, a hand-off that cost more than the rest of a request.
async def bus_client(request: Request) -> BusClient:
    return get_process(request).client


async def settings(request: Request) -> GatewaySettings:
    return get_process(request).settings  # type: ignore[return-value]


BusClientDep = Annotated[BusClient, Depends(bus_client)]
SettingsDep = Annotated[GatewaySettings, Depends(settings)]


# -- authentication ------------------------------------------------------------------------------
class Unauthenticated(ServiceError):
    """A 401: no token (`token_sent` False) or one that proves nothing."""

    def __init__(self, message: str, *, token_sent: bool, reason: str | None = None) -> None:
        super().__init__(ErrorCode.UNAUTHORIZED, message, {"reason": reason} if reason else None)
        self.token_sent = token_sent


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("authentication required", token_sent=False)
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            "send the access token as 'Authorization: Bearer <token>'", token_sent=True
        )
    return token


# Declares the scheme in the OpenAPI document (the "Authorize" button of /docs); the header itself
# is read by `bearer_token`, which tells a missing token from a malformed one.
_documented_scheme = HTTPBearer(auto_error=False, description="an access token from auth/login")


async def _claims(request: Request) -> Claims:
    token = bearer_token(request)
    verified = getattr(request.state, "claims", None)  # the rate limiter verified it already
    if verified is not None and verified.raw == token:
        return verified
    try:
        return await get_process(request).tokens.verify(token)
    except InvalidToken as exc:
        raise Unauthenticated(
            "invalid or expired access token", token_sent=True, reason=exc.reason
        ) from None


async def current_user(request: Request, _: None = Depends(_documented_scheme)) -> Claims:
    return await _claims(request)


CurrentUser = Annotated[Claims, Depends(current_user)]


# -- calling services on behalf of the request ---------------------------------------------------
@dataclass(frozen=True)
class Upstream:
    """One service, called for this request (its id, the client's address, the caller's token)."""

    service: str
    client: BusClient
    request_id: str
    client_ip: str | None
    token: str | None = None

    def _caller(self) -> dict[str, str | None]:
        """Who asks, as every request to the service carries it."""
        return {"request_id": self.request_id, "token": self.token, "client_ip": self.client_ip}

    async def __call__(self, operation: str, payload: BaseModel | None, reply: type[T]) -> T:
        return await self.client.request(self.service, operation, payload, reply, **self._caller())

    async def relay(
        self, operation: str, payload: BaseModel | None, reply: type[BaseModel]
    ) -> Response:
        """The service's reply as it wrote it, passed on without being parsed, validated and
        serialised again: for routes whose reply is the operation's contract model itself,
        which the service's responder already holds it to (`BusClient.relay`). The route still
        declares `response_model=reply`, so the OpenAPI document says what is sent."""
        data = await self.client.relay(self.service, operation, payload, reply, **self._caller())
        return Response(data, media_type="application/json")


def _upstream(service: str, request: Request, token: str | None) -> Upstream:
    return Upstream(
        service,
        get_process(request).client,
        request.state.request_id,
        request.client.host if request.client else None,
        token,
    )


async def anonymous_identity(request: Request) -> Upstream:
    return _upstream("identity", request, None)


# The authenticated upstreams authenticate themselves rather than through `CurrentUser`: FastAPI
# pays for every level of dependencies on every request, and these are on every hot route.
async def user_identity(request: Request, _: None = Depends(_documented_scheme)) -> Upstream:
    return _upstream("identity", request, (await _claims(request)).raw)


async def user_tenancy(request: Request, _: None = Depends(_documented_scheme)) -> Upstream:
    return _upstream("tenancy", request, (await _claims(request)).raw)


async def user_audit(request: Request, _: None = Depends(_documented_scheme)) -> Upstream:
    return _upstream("audit", request, (await _claims(request)).raw)


AnonymousIdentity = Annotated[Upstream, Depends(anonymous_identity)]
Identity = Annotated[Upstream, Depends(user_identity)]
Tenancy = Annotated[Upstream, Depends(user_tenancy)]
Audit = Annotated[Upstream, Depends(user_audit)]


async def tenant_by_slug(
    tenancy: Tenancy, slug: Annotated[str, Path(min_length=1, max_length=100)]
) -> TenantInfo:
    """The tenant a route's `{slug}` names; only for authenticated callers (so nobody can probe
    which slugs exist without an account), and identity still checks their membership."""
    return await tenancy("resolve", ResolveTenant(slug=slug), TenantInfo)


Tenant = Annotated[TenantInfo, Depends(tenant_by_slug)]

# The dependencies that need nothing but the request (the bearer scheme they declare is for the
# OpenAPI document only): a route made of these alone may be called directly
# (`saas.gateway.direct`), each of them called with the request.
DIRECT: dict[Callable[..., Any], Callable[[Request], Awaitable[Any]]] = {
    call: call  # type: ignore[misc]
    for call in (bus_client, settings, anonymous_identity, user_identity, user_tenancy, user_audit)
}

"""`/api/v1/auth/*`: sign-up, login, token refresh, logout, email verification, password reset.

These routes take no access token. Their answers never tell whether an address has an account:
sign-up and reset requests answer 202 with the same body either way, and a failed login is the
same 401 for an unknown address, a wrong password and a locked account.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from saas.common.contracts.identity import (
    Accepted,
    Done,
    LoginRequest,
    LogoutRequest,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    VerifyEmailRequest,
)
from saas.gateway.dependencies import AnonymousIdentity
from saas.gateway.problems import UPSTREAM, problems
from saas.gateway.routes import API_PREFIX

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])


def no_store(response: Response) -> None:
    # RFC 6749 5.1: responses carrying tokens must not be cached anywhere.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/register", status_code=202, response_model=Accepted, responses=problems(413, 422, *UPSTREAM)
)
async def register(body: RegisterRequest, identity: AnonymousIdentity) -> Accepted:
    """Sign up. The answer is the same whether or not the address already has an account; a
    verification link (or, for an existing account, a notice) goes to the address by mail."""
    return await identity("register", body, Accepted)


@router.post("/login", response_model=TokenPair, responses=problems(401, 413, 422, *UPSTREAM))
async def login(body: LoginRequest, identity: AnonymousIdentity, response: Response) -> TokenPair:
    """Exchange email and password for an access token and a refresh token."""
    no_store(response)
    return await identity("login", body, TokenPair)


@router.post("/refresh", response_model=TokenPair, responses=problems(401, 413, 422, *UPSTREAM))
async def refresh(
    body: RefreshRequest, identity: AnonymousIdentity, response: Response
) -> TokenPair:
    """Exchange a refresh token (once) for a new pair. Presenting a used refresh token again ends
    every session of its family."""
    no_store(response)
    return await identity("refresh", body, TokenPair)


@router.post("/logout", response_model=Done, responses=problems(413, 422, *UPSTREAM))
async def logout(body: LogoutRequest, identity: AnonymousIdentity) -> Done:
    """End the refresh token's session, or every session of its user (`everywhere`)."""
    return await identity("logout", body, Done)


@router.post("/verify-email", response_model=Done, responses=problems(400, 413, 422, *UPSTREAM))
async def verify_email(body: VerifyEmailRequest, identity: AnonymousIdentity) -> Done:
    """Confirm an email address with the token from the verification mail."""
    return await identity("verify_email", body, Done)


@router.post(
    "/password-reset/request",
    status_code=202,
    response_model=Accepted,
    responses=problems(413, 422, *UPSTREAM),
)
async def request_password_reset(
    body: PasswordResetRequest, identity: AnonymousIdentity
) -> Accepted:
    """Mail a reset link if the address has an account; the answer is the same either way."""
    return await identity("password_reset.request", body, Accepted)


@router.post(
    "/password-reset/confirm", response_model=Done, responses=problems(400, 413, 422, *UPSTREAM)
)
async def confirm_password_reset(body: PasswordResetConfirm, identity: AnonymousIdentity) -> Done:
    """Set a new password with the token from the reset mail; every session of the account ends."""
    return await identity("password_reset.confirm", body, Done)

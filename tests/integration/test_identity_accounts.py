"""Accounts against real PostgreSQL and NATS: sign-up, verification, reset, and no enumeration."""

from __future__ import annotations

import asyncio

import pytest

from saas.common.bus.requests import Empty
from saas.common.contracts.identity import (
    Accepted,
    Done,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    User,
    VerifyEmailRequest,
)
from saas.common.errors import ErrorCode, ServiceError
from tests.support.identity import PASSWORD, events, mails, new_email


async def refused(call) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await call
    return caught.value


async def test_sign_up_verify_and_see_yourself(identity):
    email = new_email()
    reply = await identity.call(
        "register", RegisterRequest(email=f"  {email.upper()} ", password=PASSWORD), Accepted
    )
    assert reply.status == "accepted"
    token = await identity.mail_token(email, "verify_email")
    pair = await identity.login(email)
    me = await identity.call("users.me", Empty(), User, token=pair.access_token)
    assert me.email == email and not me.email_verified and not me.platform_admin
    await identity.call("verify_email", VerifyEmailRequest(token=token), Done)
    me = await identity.call("users.me", Empty(), User, token=pair.access_token)
    assert me.email_verified
    (registered,) = await events(identity, "user.registered", subject=me.id)
    assert registered["data"] == {"user_id": me.id, "email": email, "ip_address": "192.0.2.10"}
    assert registered["actor"] == {"type": "user", "id": me.id}
    assert await events(identity, "user.email_verified", subject=me.id)


async def test_a_verification_token_works_once(identity):
    email = new_email()
    await identity.call("register", RegisterRequest(email=email, password=PASSWORD), Accepted)
    token = await identity.mail_token(email, "verify_email")
    await identity.call("verify_email", VerifyEmailRequest(token=token), Done)
    again = await refused(identity.call("verify_email", VerifyEmailRequest(token=token), Done))
    assert again.code is ErrorCode.BAD_REQUEST
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    assert (
        await refused(identity.call("verify_email", VerifyEmailRequest(token=forged), Done))
    ).code is ErrorCode.BAD_REQUEST


async def test_the_password_policy_names_each_problem_on_its_field(identity):
    error = await refused(
        identity.call("register", RegisterRequest(email=new_email(), password="qwerty"), Accepted)
    )
    assert error.code is ErrorCode.VALIDATION_ERROR
    assert {e["msg"] for e in error.details["errors"]} == {
        "must be at least 12 characters long",
        "is one of the most commonly used passwords; choose another",
    }
    assert all(e["loc"] == ["password"] for e in error.details["errors"])


async def test_sign_up_with_a_taken_address_answers_the_same_and_tells_its_owner(identity):
    email = await identity.signed_up()
    fresh = await identity.raw("register", {"email": new_email(), "password": PASSWORD})
    taken = await identity.raw("register", {"email": email.upper(), "password": "another-Pass-77"})
    assert taken == fresh  # byte for byte
    for _ in range(100):
        if mails(identity.mail_dir, email, "existing_account"):
            break
        await asyncio.sleep(0.1)
    (notice,) = mails(identity.mail_dir, email, "existing_account")
    assert "X-Saas-Token" not in notice
    pair = await identity.login(email)  # the account and its password are untouched
    assert pair.access_token


async def test_a_reset_request_answers_the_same_for_any_address(identity):
    email = await identity.signed_up()
    known = await identity.raw("password_reset.request", {"email": email})
    unknown = await identity.raw("password_reset.request", {"email": new_email()})
    assert known == unknown
    assert await identity.mail_token(email, "password_reset")


async def test_a_password_reset_revokes_every_session_and_works_once(identity):
    email = await identity.signed_up()
    first = await identity.login(email)
    second = await identity.login(email)
    await identity.call("password_reset.request", PasswordResetRequest(email=email), Accepted)
    token = await identity.mail_token(email, "password_reset")
    new_password = "violet-harbour-lamp-42"
    weak = await refused(
        identity.call(
            "password_reset.confirm", PasswordResetConfirm(token=token, new_password="short"), Done
        )
    )
    assert weak.details["errors"][0]["loc"] == ["new_password"]
    await identity.call(
        "password_reset.confirm", PasswordResetConfirm(token=token, new_password=new_password), Done
    )
    for pair in (first, second):
        error = await refused(
            identity.call("refresh", RefreshRequest(refresh_token=pair.refresh_token), TokenPair)
        )
        assert error.code is ErrorCode.UNAUTHORIZED
    assert (await refused(identity.login(email))).code is ErrorCode.UNAUTHORIZED
    assert await identity.login(email, new_password)
    reused = await refused(
        identity.call(
            "password_reset.confirm",
            PasswordResetConfirm(token=token, new_password="another-violet-lamp-43"),
            Done,
        )
    )
    assert reused.code is ErrorCode.BAD_REQUEST
    me = await identity.call("users.me", Empty(), User, token=first.access_token)
    assert await events(identity, "user.password_reset", subject=me.id)

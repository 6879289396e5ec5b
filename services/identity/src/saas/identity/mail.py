"""Mail: what identity sends, how it goes out, and the consumer that sends it.

Requests never send mail. They publish events (`user.registered`, `user.duplicate_registration`,
`user.password_reset_requested`, `invitation.created`); a consumer of identity's own events
creates the single-use token (storing only its hash), composes the message and hands it to the
sender, in the consumer's transaction: a mail server that is slow or down delays mail, never a
request, and a failed send rolls the token back and is retried. No token appears in an event or
a log line; the message itself is the only place it exists.

Senders: SMTP (production; aiosmtplib), or one `.eml` file per message in MAIL_DIR
(development: `saas dev` writes to `.devstack/mail/`), which a person or a script can read: the
link and the bare token are in the body, the token also in the `X-Saas-Token` header.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.events import EventEnvelope
from saas.common.logging import get_logger
from saas.common.metrics import Metrics
from saas.identity import accounts, invitations
from saas.identity.deps import Deps
from saas.identity.settings import IdentitySettings
from saas.identity.store.tables import invitations as invitations_table
from saas.identity.store.tables import one_time_tokens, users

log = get_logger(__name__)

MAIL_EVENTS = (
    "user.registered",
    "user.duplicate_registration",
    "user.password_reset_requested",
    "invitation.created",
)
# At most one reset mail per account in this long, however often a reset is asked for.
RESET_MAIL_INTERVAL = timedelta(seconds=60)
PRODUCT = "SaaS"


@dataclass(frozen=True)
class Message:
    kind: str
    to: str
    subject: str
    body: str
    token: str | None = None


# -- composing (pure) ----------------------------------------------------------------------------
def link(public_url: str, path: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/{path}?token={quote(token, safe='')}"


def _with_token(text: str, url: str, token: str) -> str:
    return (
        f"{text}\n\n  {url}\n\nOr use this token where you are asked for it:\n\n  Token: {token}\n"
    )


def verification_message(to: str, public_url: str, token: str, *, again: bool = False) -> Message:
    opening = (
        "Someone (hopefully you) tried to sign up again with this address, which already has an "
        "account that is not verified yet. To verify it, open this link:"
        if again
        else f"Welcome to {PRODUCT}. To verify your email address, open this link:"
    )
    return Message(
        "verify_email",
        to,
        f"Verify your email address for {PRODUCT}",
        _with_token(opening, link(public_url, "verify-email", token), token),
        token,
    )


def existing_account_message(to: str, public_url: str) -> Message:
    return Message(
        "existing_account",
        to,
        f"Someone tried to sign up to {PRODUCT} with your address",
        "Someone tried to create an account with this address, which already has one. If it was "
        "you, log in instead, or reset your password if you forgot it:\n\n"
        f"  {public_url.rstrip('/')}/reset-password\n\n"
        "If it was not you, you need not do anything: nothing changed on your account.\n",
    )


def reset_message(to: str, public_url: str, token: str, ttl: int) -> Message:
    text = (
        "Someone (hopefully you) asked to reset the password of your account. To choose a new "
        f"password, open this link within {ttl // 60} minutes:"
    )
    body = _with_token(text, link(public_url, "reset-password", token), token)
    body += "\nIf you did not ask for this, ignore this message: your password stays as it is.\n"
    return Message("password_reset", to, f"Reset your {PRODUCT} password", body, token)


def invitation_message(
    to: str, public_url: str, token: str, role: str, inviter: str | None
) -> Message:
    who = inviter or "Someone"
    text = (
        f"{who} invited you to join their organisation on {PRODUCT} as {role}. Log in (or sign "
        "up) with this address, then open this link to accept:"
    )
    return Message(
        "invitation",
        to,
        f"You are invited to {PRODUCT}",
        _with_token(text, link(public_url, "invitations/accept", token), token),
        token,
    )


def to_email(message: Message, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = make_msgid(domain="saas.local")
    mail["X-Saas-Mail-Kind"] = message.kind
    if message.token:
        mail["X-Saas-Token"] = message.token
    # Plain 7-bit text, never quoted-printable: the link and the token must be readable as they
    # are, by a person or by grep.
    mail.set_content(message.body, cte="7bit")
    return mail


# -- senders -------------------------------------------------------------------------------------
class MailSender(Protocol):
    async def send(self, message: Message) -> None: ...


class FileSender:
    """Development: one `.eml` file per message, written whole (a reader never sees half)."""

    def __init__(self, directory: Path, sender: str) -> None:
        self.directory = directory
        self.sender = sender

    async def send(self, message: Message) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        who = re.sub(r"[^a-z0-9@._-]", "_", message.to.lower())
        name = f"{stamp}-{message.kind}-{who}-{uuid.uuid4().hex[:8]}.eml"
        partial = self.directory / f".{name}.partial"
        unfolded = policy.default.clone(max_line_length=0)  # one header, one line
        partial.write_bytes(to_email(message, self.sender).as_bytes(policy=unfolded))
        os.replace(partial, self.directory / name)


class SmtpSender:
    """Production: SMTP with STARTTLS (or implicit TLS on port 465) and a timeout."""

    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings

    async def send(self, message: Message) -> None:
        import aiosmtplib

        s = self.settings
        implicit_tls = s.mail_smtp_port == 465
        await aiosmtplib.send(
            to_email(message, s.mail_from),
            hostname=s.mail_smtp_host,
            port=s.mail_smtp_port,
            username=s.mail_smtp_user,
            password=s.mail_smtp_password.get_secret_value() if s.mail_smtp_password else None,
            use_tls=implicit_tls,
            start_tls=s.mail_smtp_starttls and not implicit_tls,
            timeout=s.mail_smtp_timeout,
        )


def sender_from_settings(settings: IdentitySettings) -> MailSender:
    if settings.mail_smtp_host:
        return SmtpSender(settings)
    return FileSender(settings.mail_dir, settings.mail_from)


# -- the consumer --------------------------------------------------------------------------------
async def _user(session: AsyncSession, user_id: str):
    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        return None
    return (
        await session.execute(
            sa.select(users.c.id, users.c.email, users.c.email_verified_at).where(users.c.id == uid)
        )
    ).one_or_none()


async def _recent_reset_mail(session: AsyncSession, user_id: uuid.UUID) -> bool:
    return (
        await session.execute(
            sa.select(sa.func.count()).where(
                one_time_tokens.c.user_id == user_id,
                one_time_tokens.c.purpose == accounts.PASSWORD_RESET,
                one_time_tokens.c.created_at > sa.func.now() - RESET_MAIL_INTERVAL,
            )
        )
    ).scalar_one() > 0


async def message_for(deps: Deps, session: AsyncSession, event: EventEnvelope) -> Message | None:
    """The message an event calls for, with its new single-use token stored (hashed) in
    `session`; None when there is nothing (any more) to send."""
    s = deps.settings
    data = event.data
    if event.type in ("user.registered", "user.duplicate_registration"):
        user = await _user(session, data["user_id"])
        if user is None:
            return None
        if user.email_verified_at is not None:
            if event.type == "user.registered":
                return None
            return existing_account_message(user.email, s.public_url)
        token = await accounts.issue_token(
            session, user.id, accounts.VERIFY_EMAIL, s.email_verification_ttl
        )
        return verification_message(
            user.email, s.public_url, token, again=event.type == "user.duplicate_registration"
        )
    if event.type == "user.password_reset_requested":
        user = await _user(session, data["user_id"])
        if user is None or await _recent_reset_mail(session, user.id):
            return None
        token = await accounts.issue_token(
            session, user.id, accounts.PASSWORD_RESET, s.password_reset_ttl
        )
        return reset_message(user.email, s.public_url, token, s.password_reset_ttl)
    if event.type == "invitation.created":
        invitation_id = uuid.UUID(data["invitation_id"])
        token = await invitations.issue_secret(session, invitation_id)
        if token is None:
            return None
        inviter = (
            await session.execute(
                sa.select(users.c.email)
                .join(invitations_table, invitations_table.c.invited_by == users.c.id)
                .where(invitations_table.c.id == invitation_id)
            )
        ).scalar_one_or_none()
        return invitation_message(data["email"], s.public_url, token, data["role"], inviter)
    return None


def make_mail_handler(deps: Deps, sender: MailSender, metrics: Metrics):
    sent = metrics.counter("identity_mail_sent_total", "Mail handed to the sender", ("kind",))
    failed = metrics.counter("identity_mail_failures_total", "Mail the sender refused", ("kind",))

    async def on_events(session: AsyncSession, batch: list[EventEnvelope]) -> None:
        for event in batch:
            message = await message_for(deps, session, event)
            if message is None:
                continue
            try:
                await sender.send(message)
            except Exception as exc:  # the consumer retries the event; the token rolls back
                failed.labels(message.kind).inc()
                log.warning(
                    "mail not sent", kind=message.kind, event_id=event.id, error=type(exc).__name__
                )
                raise
            sent.labels(message.kind).inc()
            log.info("mail sent", kind=message.kind, event_id=event.id)

    return on_events

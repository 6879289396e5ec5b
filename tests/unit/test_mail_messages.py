"""What identity mails: the link and the token in plain text, written whole as one file each."""

from __future__ import annotations

from email import message_from_bytes, policy

from saas.identity.mail import (
    FileSender,
    existing_account_message,
    invitation_message,
    reset_message,
    verification_message,
)

TOKEN = "0123456789abcdef0123456789abcdef.s3cr3t-Token_value"


def test_a_verification_mail_holds_the_link_and_the_token():
    message = verification_message("ada@example.com", "https://app.example.com/", TOKEN)
    assert f"https://app.example.com/verify-email?token={TOKEN}" in message.body
    assert f"Token: {TOKEN}" in message.body


def test_the_existing_account_notice_carries_no_token():
    message = existing_account_message("ada@example.com", "https://app.example.com")
    assert message.token is None and "already has one" in message.body


def test_reset_and_invitation_mails_carry_their_links():
    reset = reset_message("ada@example.com", "https://a.example", TOKEN, 3600)
    assert "reset-password?token=" in reset.body and "60 minutes" in reset.body
    invite = invitation_message(
        "bo@example.com", "https://a.example", TOKEN, "admin", "ada@example.com"
    )
    assert (
        "invitations/accept?token=" in invite.body and "ada@example.com invited you" in invite.body
    )


async def test_the_file_sender_writes_one_complete_eml_per_message(tmp_path):
    sender = FileSender(tmp_path / "mail", "SaaS <no-reply@example.com>")
    await sender.send(verification_message("Ada@Example.com", "https://a.example", TOKEN))
    await sender.send(reset_message("ada@example.com", "https://a.example", TOKEN, 3600))
    files = sorted((tmp_path / "mail").iterdir())
    assert len(files) == 2 and all(f.suffix == ".eml" and not f.name.startswith(".") for f in files)
    parsed = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["To"] == "Ada@Example.com" and parsed["X-Saas-Token"] == TOKEN
    assert parsed["X-Saas-Mail-Kind"] == "verify_email"
    assert TOKEN in parsed.get_content()
    raw = files[0].read_bytes()  # readable as it is, by grep: no quoted-printable, no folding
    assert f"\n  Token: {TOKEN}\n".encode() in raw
    assert f"\nX-Saas-Token: {TOKEN}\n".encode() in raw
    assert f"verify-email?token={TOKEN}\n".encode() in raw

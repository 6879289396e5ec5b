"""Identity's settings: the groups it reads, and its own (passwords, tokens, lockout, mail)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from saas.common.settings import (
    BusSettings,
    DatabaseSettings,
    EventSettings,
    SigningKeySettings,
    TokenSettings,
)

DAY = 86400


class IdentitySettings(
    DatabaseSettings, BusSettings, EventSettings, TokenSettings, SigningKeySettings
):
    """Identity reads the database, the bus, events and the secret protecting its signing keys."""

    # Passwords: argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane).
    password_min_length: int = Field(default=12, ge=8, le=128)
    argon2_time_cost: int = Field(default=2, ge=1, le=20)
    argon2_memory_cost: int = Field(default=19456, ge=8 * 1024, description="KiB")
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    password_hash_threads: int | None = Field(
        default=None, ge=1, description="threads hashing passwords; default: the CPUs available"
    )
    password_hash_queue: int = Field(
        default=64, ge=1, description="hashes waiting at most; beyond it logins are turned away"
    )

    # Tokens.
    access_token_ttl: int = Field(default=900, ge=60, le=3600, description="seconds")
    refresh_token_ttl: int = Field(default=30 * DAY, ge=3600, description="seconds, if unused")

    # Failed logins: per account (lock doubling up to a cap) and per client address (a window).
    login_failures_before_lock: int = Field(default=5, ge=1, le=100)
    login_lock_seconds: float = Field(default=60.0, gt=0, description="first lock")
    login_lock_max_seconds: float = Field(default=3600.0, gt=0, description="longest lock")
    address_failures_limit: int = Field(default=50, ge=1, description="failures per window")
    address_failure_window: float = Field(default=900.0, gt=0, description="seconds")
    address_block_seconds: float = Field(default=900.0, gt=0)

    # Single-use tokens sent by mail.
    email_verification_ttl: int = Field(default=2 * DAY, ge=300, description="seconds")
    password_reset_ttl: int = Field(default=3600, ge=300, le=DAY, description="seconds")
    invitation_ttl: int = Field(default=7 * DAY, ge=3600, description="seconds")

    # Mail: SMTP when MAIL_SMTP_HOST is set, else one file per message in MAIL_DIR (development).
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="where the links in mail point"
    )
    mail_from: str = "SaaS <no-reply@localhost>"
    mail_dir: Path = Path(".devstack/mail")
    mail_smtp_host: str | None = None
    mail_smtp_port: int = Field(default=587, ge=1, le=65535)
    mail_smtp_user: str | None = None
    mail_smtp_password: SecretStr | None = None
    mail_smtp_starttls: bool = True
    mail_smtp_timeout: float = Field(default=10.0, gt=0)

    def production_checks(self) -> list[str]:
        problems = []
        if not self.mail_smtp_host:
            problems.append(
                "MAIL_SMTP_HOST is not set: production sends mail over SMTP, never to MAIL_DIR"
            )
        if not self.public_url.startswith("https://"):
            problems.append(f"PUBLIC_URL is {self.public_url!r}; links in mail must use https")
        if self.mail_from.endswith("@localhost>") or self.mail_from.endswith("@localhost"):
            problems.append("MAIL_FROM is the development default; set your sender address")
        if self.login_lock_max_seconds < self.login_lock_seconds:
            problems.append("LOGIN_LOCK_MAX_SECONDS is shorter than LOGIN_LOCK_SECONDS")
        return problems

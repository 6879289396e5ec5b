"""Process settings, read from the environment with the names operators already know.

Settings come in groups, one per concern (the database, the bus, events, Redis, Temporal, HTTP,
token verification, signing keys). Each group owns its fields, their validation and its own production checks. A process's
settings class composes the groups it uses, and nothing else:

    class AuditSettings(DatabaseSettings, BusSettings, EventSettings):
        database_role: str | None = "audit_writer"

`Settings.load()` reads the environment and, in production, refuses an unsafe configuration,
naming every problem of every group the process uses, at once. A process is never asked for a
setting it does not read, so Kubernetes hands each pod only its own secrets. The frame opens the
resources the groups describe (`saas.common.process`): settings decide what a process connects to.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET_KEY = "dev-only-change-me"  # noqa: S105 - the value production refuses
MIN_JWT_SECRET_LENGTH = 32


class AppEnv(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class DatabaseSSLMode(StrEnum):
    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


SSL_MODES_THAT_REQUIRE = {
    DatabaseSSLMode.REQUIRE,
    DatabaseSSLMode.VERIFY_CA,
    DatabaseSSLMode.VERIFY_FULL,
}


class InsecureConfigurationError(ValueError):
    """Raised when production settings are unsafe; `problems` names each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"refusing to start with an insecure production configuration:\n{lines}")


class Settings(BaseSettings):
    """What every process has: its environment, logging, ops endpoints and shutdown budget.

    Groups subclass it; a group states its production rules in `production_checks`, which
    `production_problems` collects from every group a process's settings class inherits.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    app_env: AppEnv = AppEnv.DEVELOPMENT
    debug: bool = False
    log_level: str = "INFO"
    log_format: str | None = Field(
        default=None, description="json or console; by APP_ENV when unset"
    )
    ops_host: str = "127.0.0.1"
    ops_port: int | None = Field(
        default=None, ge=0, le=65535, description="default: the port the process declares"
    )
    shutdown_timeout: float = Field(
        default=20.0, gt=0, description="seconds in-flight work may take after SIGTERM"
    )
    drain_delay: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="seconds the ports keep accepting after SIGTERM turned readiness false, "
        "for load balancers that learn from readiness to stop sending",
    )
    health_check_timeout: float = Field(default=2.0, gt=0)

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """The one way a process reads its settings: from the environment, refusing unsafe production."""
        settings = cls(**overrides)
        if settings.app_env is AppEnv.PRODUCTION:
            problems = settings.production_problems()
            if problems:
                raise InsecureConfigurationError(problems)
        return settings

    def production_checks(self) -> list[str]:
        return ["DEBUG is true"] if self.debug else []

    def production_problems(self) -> list[str]:
        """Every reason this configuration is unsafe for production (empty when it is fine).

        Each group's own `production_checks` runs once, whatever the order of inheritance, so a
        group cannot silence another by forgetting to call `super()`."""
        problems: list[str] = []
        for group in reversed(type(self).__mro__):
            check = group.__dict__.get("production_checks")
            if check is not None:
                problems.extend(check(self))
        return problems

    @cached_property
    def effective_log_format(self) -> str:
        if self.log_format:
            return self.log_format
        return "json" if self.app_env is AppEnv.PRODUCTION else "console"


class DatabaseSettings(Settings):
    """PostgreSQL: the URL, TLS, the role every connection acts as, and the pool."""

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/saas"
    database_ssl_mode: DatabaseSSLMode = DatabaseSSLMode.DISABLE
    database_role: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="role every connection acts as (SET ROLE)",
    )
    # A pool keeps every connection it opens (up to DB_POOL_SIZE, until DB_POOL_RECYCLE): an
    # overflow connection is closed when it is given back, so a burst past the pool's size used
    # to open and close a connection per request or so (about 14 ms of PostgreSQL's CPU and 4 ms
    # of ours each). The most a process holds is the same 30 as with 10 + 20 before.
    db_pool_size: int = Field(default=30, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    # Connections a process opens as it starts (None: the pool's size), so that its first burst
    # finds them open: a PostgreSQL backend's start and authentication cost the server about
    # 7 ms of CPU each, which the first 50 tenants created at once paid some 80 times.
    db_pool_min: int | None = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=30.0, gt=0)
    db_pool_recycle: int = Field(default=1800, ge=-1)
    db_pool_pre_ping: bool = True
    # Every statement, lock wait and idle transaction is bounded by default (0 turns one off): a
    # request must never hang on a stuck query or a lock held by someone else.
    db_statement_timeout: float = Field(default=30.0, ge=0, description="seconds")
    db_lock_timeout: float = Field(default=10.0, ge=0, description="seconds")
    db_idle_in_transaction_timeout: float = Field(default=60.0, ge=0, description="seconds")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        # Operators paste plain postgres URLs; the services always speak asyncpg.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        return value

    def production_checks(self) -> list[str]:
        if self.database_ssl_mode in SSL_MODES_THAT_REQUIRE:
            return []
        return [
            f"DATABASE_SSL_MODE is {self.database_ssl_mode.value!r}; use require, verify-ca or verify-full"
        ]


class BusSettings(Settings):
    """NATS: where it is, who this process is there, and how long a request may take."""

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="nats:// or tls:// URL, with the process's user and password in it",
    )
    nats_tls_ca_file: str | None = Field(default=None, description="CA bundle for tls:// URLs")
    bus_request_timeout: float = Field(default=5.0, gt=0)

    def production_checks(self) -> list[str]:
        parts = urlsplit(self.nats_url)
        problems = []
        if not parts.username or not parts.password:
            problems.append("NATS_URL has no user and password: every process must authenticate")
        if parts.scheme != "tls":
            problems.append(
                "NATS_URL is not tls://: credentials and events must not cross in clear"
            )
        return problems


class EventSettings(Settings):
    """The `EVENTS` stream's limits, the outbox relay and the event consumers."""

    events_duplicate_window: float = Field(
        default=120.0, gt=0, description="seconds JetStream remembers event ids"
    )
    events_max_age: float = Field(
        default=30 * 86400.0, gt=0, description="seconds events are kept in the stream"
    )
    events_max_bytes: int = Field(default=10 * 1024**3, gt=0)
    events_max_msg_bytes: int = Field(default=128 * 1024, gt=0)
    events_replicas: int = Field(default=1, ge=1, le=5)
    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    outbox_poll_interval: float = Field(default=1.0, gt=0)
    outbox_max_attempts: int = Field(
        default=5, ge=1, description="failures of a row's own before it is quarantined"
    )
    consumer_batch_size: int = Field(default=200, ge=1, le=10_000)
    consumer_max_deliveries: int = Field(default=5, ge=1)
    consumer_ack_wait: float = Field(default=30.0, gt=0)

    def production_checks(self) -> list[str]:
        if self.events_replicas < 3:
            return [
                f"EVENTS_REPLICAS is {self.events_replicas}; production keeps events on 3 NATS "
                "servers, so losing one loses nothing"
            ]
        return []


class RedisSettings(Settings):
    """Redis (Valkey): rate limiting. Optional in development, required in production."""

    redis_url: str | None = None

    def production_checks(self) -> list[str]:
        return [] if self.redis_url else ["REDIS_URL is not set (rate limiting needs it)"]


class TemporalSettings(Settings):
    """The Temporal server, namespace and task queue of the workflows."""

    temporal_host: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "tenancy"


class HttpSettings(Settings):
    """A public HTTP surface: browsers' cross-origin access."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    def production_checks(self) -> list[str]:
        if "*" in self.cors_origins and self.cors_allow_credentials:
            return ["CORS_ORIGINS contains '*' while CORS_ALLOW_CREDENTIALS is true"]
        return []


class TokenSettings(Settings):
    """What a valid access token is: who issues it and whom it is for (the gateway and every
    service that checks who is calling verify tokens the same way, `saas.common.tokens`)."""

    jwt_issuer: str = Field(default="saas-identity", min_length=1)
    jwt_audience: str = Field(default="saas-api", min_length=1)
    jwt_leeway: float = Field(default=30.0, ge=0, le=300, description="seconds of clock skew")
    membership_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="how long a service trusts identity's answer on a role",
    )


class SigningKeySettings(Settings):
    """The secret that protects token signing keys at rest (identity only)."""

    jwt_secret_key: str = DEFAULT_JWT_SECRET_KEY

    def production_checks(self) -> list[str]:
        if self.jwt_secret_key == DEFAULT_JWT_SECRET_KEY:
            return ["JWT_SECRET_KEY is the development default; set a random secret"]
        if len(self.jwt_secret_key) < MIN_JWT_SECRET_LENGTH:
            return [f"JWT_SECRET_KEY is shorter than {MIN_JWT_SECRET_LENGTH} characters"]
        return []

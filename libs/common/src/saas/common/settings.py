"""Process settings, read from the environment with the names operators already know.

Every process builds one `Settings` (or a service's subclass) at start-up. In production an
insecure configuration refuses to start, and every problem is named at once.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Self

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
    """Settings shared by every process. Services subclass it to add their own."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    app_env: AppEnv = AppEnv.DEVELOPMENT
    debug: bool = False
    service_name: str = "saas"
    log_level: str = "INFO"
    log_format: str | None = Field(
        default=None, description="json or console; by APP_ENV when unset"
    )

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/saas"
    database_ssl_mode: DatabaseSSLMode = DatabaseSSLMode.DISABLE
    database_role: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="role every connection acts as (SET ROLE)",
    )
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    db_pool_timeout: float = Field(default=30.0, gt=0)
    db_pool_recycle: int = Field(default=1800, ge=-1)
    db_pool_pre_ping: bool = True

    jwt_secret_key: str = DEFAULT_JWT_SECRET_KEY
    redis_url: str | None = None
    nats_url: str = "nats://127.0.0.1:4222"
    temporal_host: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False

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
    consumer_batch_size: int = Field(default=200, ge=1, le=10_000)
    consumer_max_deliveries: int = Field(default=5, ge=1)
    consumer_ack_wait: float = Field(default=30.0, gt=0)

    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=0, ge=0, le=65535)
    shutdown_timeout: float = Field(
        default=20.0, gt=0, description="seconds in-flight work may take after SIGTERM"
    )
    bus_request_timeout: float = Field(default=5.0, gt=0)
    health_check_timeout: float = Field(default=2.0, gt=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        # Operators paste plain postgres URLs; the services always speak asyncpg.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        return value

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """The one way a process reads its settings: from the environment, refusing unsafe production."""
        settings = cls(**overrides)
        if settings.app_env is AppEnv.PRODUCTION:
            problems = settings.production_problems()
            if problems:
                raise InsecureConfigurationError(problems)
        return settings

    def production_problems(self) -> list[str]:
        """Every reason this configuration is unsafe for production (empty when it is fine)."""
        problems: list[str] = []
        if self.jwt_secret_key == DEFAULT_JWT_SECRET_KEY:
            problems.append("JWT_SECRET_KEY is the development default; set a random secret")
        elif len(self.jwt_secret_key) < MIN_JWT_SECRET_LENGTH:
            problems.append(f"JWT_SECRET_KEY is shorter than {MIN_JWT_SECRET_LENGTH} characters")
        if self.debug:
            problems.append("DEBUG is true")
        if not self.redis_url:
            problems.append("REDIS_URL is not set (rate limiting needs it)")
        if self.database_ssl_mode not in SSL_MODES_THAT_REQUIRE:
            problems.append(
                f"DATABASE_SSL_MODE is {self.database_ssl_mode.value!r}; use require, verify-ca or verify-full"
            )
        if "*" in self.cors_origins and self.cors_allow_credentials:
            problems.append("CORS_ORIGINS contains '*' while CORS_ALLOW_CREDENTIALS is true")
        return problems

    @cached_property
    def effective_log_format(self) -> str:
        if self.log_format:
            return self.log_format
        return "json" if self.app_env is AppEnv.PRODUCTION else "console"

import pytest
from pydantic import ValidationError

from saas.audit.main import AuditSettings
from saas.common.settings import (
    DEFAULT_JWT_SECRET_KEY,
    BusSettings,
    DatabaseSettings,
    EventSettings,
    HttpSettings,
    InsecureConfigurationError,
    RedisSettings,
    SigningKeySettings,
    TemporalSettings,
    TokenSettings,
)
from saas.gateway.settings import GatewaySettings
from saas.identity.main import IdentitySettings
from saas.tenancy.settings import ServiceSettings, WorkerSettings


class Settings(
    DatabaseSettings,
    BusSettings,
    EventSettings,
    RedisSettings,
    TemporalSettings,
    HttpSettings,
    TokenSettings,
    SigningKeySettings,
):
    """A process that uses every group, so every production rule applies."""


SAFE_PRODUCTION = {
    "APP_ENV": "production",
    "JWT_SECRET_KEY": "k" * 48,
    "REDIS_URL": "redis://cache:6379/0",
    "DATABASE_SSL_MODE": "verify-full",
    "DEBUG": "false",
    "EVENTS_REPLICAS": "3",
    "NATS_URL": "tls://identity:s3cret@nats:4222",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for key in (
        list(SAFE_PRODUCTION)
        + ["CORS_ORIGINS", "CORS_ALLOW_CREDENTIALS", "DATABASE_URL"]
        + ["MAIL_SMTP_HOST", "PUBLIC_URL", "MAIL_FROM"]
        + ["BACKUP_DIR", "TENANCY_TEST_FAULTS"]
    ):
        monkeypatch.delenv(key, raising=False)
    for key in ("NATS_URL", "TEMPORAL_HOST"):
        monkeypatch.delenv(key, raising=False)

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return set_env


def test_safe_production_configuration_loads(env):
    env(**SAFE_PRODUCTION)
    settings = Settings.load()
    assert settings.app_env == "production"
    assert settings.effective_log_format == "json"


def test_production_names_every_problem_at_once(env):
    env(
        APP_ENV="production",
        DEBUG="true",
        CORS_ORIGINS="*,https://app.example",
        CORS_ALLOW_CREDENTIALS="true",
    )
    with pytest.raises(InsecureConfigurationError) as caught:
        Settings.load()
    problems = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 8
    for needle in (
        "JWT_SECRET_KEY",
        "DEBUG",
        "REDIS_URL",
        "DATABASE_SSL_MODE",
        "CORS_ORIGINS",
        "EVENTS_REPLICAS",
        "NATS_URL has no user",
        "NATS_URL is not tls",
    ):
        assert needle in problems


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"JWT_SECRET_KEY": DEFAULT_JWT_SECRET_KEY}, "development default"),
        ({"JWT_SECRET_KEY": "short-but-not-default"}, "shorter than 32"),
        ({"DEBUG": "true"}, "DEBUG"),
        ({"DATABASE_SSL_MODE": "prefer"}, "DATABASE_SSL_MODE"),
        ({"DATABASE_SSL_MODE": "disable"}, "DATABASE_SSL_MODE"),
        ({"CORS_ORIGINS": "*", "CORS_ALLOW_CREDENTIALS": "1"}, "CORS_ORIGINS"),
    ],
)
def test_each_insecure_production_setting_is_refused(env, override, needle):
    env(**{**SAFE_PRODUCTION, **override})
    with pytest.raises(InsecureConfigurationError) as caught:
        Settings.load()
    assert caught.value.problems == [p for p in caught.value.problems if needle in p]


def test_production_without_redis_is_refused(env, monkeypatch):
    env(**SAFE_PRODUCTION)
    monkeypatch.delenv("REDIS_URL")
    with pytest.raises(InsecureConfigurationError, match="REDIS_URL"):
        Settings.load()


def test_wildcard_cors_without_credentials_is_allowed(env):
    env(**SAFE_PRODUCTION, CORS_ORIGINS="*")
    assert Settings.load().cors_origins == ["*"]


def test_development_accepts_the_defaults(env):
    settings = Settings.load()
    assert settings.app_env == "development"
    assert settings.effective_log_format == "console"


def test_plain_postgres_url_gets_the_async_driver(env):
    env(DATABASE_URL="postgres://u:p@db:5432/app")
    assert Settings.load().database_url == "postgresql+asyncpg://u:p@db:5432/app"


def test_invalid_values_are_rejected_clearly(env):
    env(DB_POOL_SIZE="0")
    with pytest.raises(ValidationError, match="db_pool_size"):
        Settings.load()


def test_audit_starts_in_production_with_only_database_and_nats_settings(env):
    env(
        APP_ENV="production",
        DATABASE_URL="postgres://audit@db:5432/saas",
        DATABASE_SSL_MODE="verify-full",
        NATS_URL="tls://audit:s3cret@nats:4222",
        EVENTS_REPLICAS="3",
    )
    settings = AuditSettings.load()  # no JWT_SECRET_KEY, no REDIS_URL: audit reads neither
    assert settings.database_role == "audit_writer"
    assert not hasattr(settings, "jwt_secret_key") and not hasattr(settings, "redis_url")


def test_each_process_is_refused_only_for_what_it_uses(env):
    env(APP_ENV="production", DEBUG="true", CORS_ORIGINS="*", CORS_ALLOW_CREDENTIALS="true")
    expected = {
        AuditSettings: {"DEBUG", "DATABASE_SSL_MODE", "EVENTS_REPLICAS", "NATS_URL"},
        ServiceSettings: {"DEBUG", "DATABASE_SSL_MODE", "EVENTS_REPLICAS", "NATS_URL"},
        WorkerSettings: {"DEBUG", "DATABASE_SSL_MODE", "NATS_URL", "BACKUP_DIR"},
        IdentitySettings: {
            "DEBUG",
            "DATABASE_SSL_MODE",
            "JWT_SECRET_KEY",
            "EVENTS_REPLICAS",
            "NATS_URL",
            "MAIL_SMTP_HOST",
            "PUBLIC_URL",
            "MAIL_FROM",
        },
        GatewaySettings: {"DEBUG", "REDIS_URL", "CORS_ORIGINS", "NATS_URL"},
    }
    for settings_class, names in expected.items():
        with pytest.raises(InsecureConfigurationError) as caught:
            settings_class.load()
        named = {p.split(" ", 1)[0] for p in caught.value.problems}
        assert named == names, settings_class.__name__


def test_the_tenancy_worker_refuses_the_test_fault_hook_in_production(env, tmp_path):
    env(
        APP_ENV="production",
        DATABASE_SSL_MODE="verify-full",
        NATS_URL="tls://tenancy-worker:s3cret@nats:4222",
        BACKUP_DIR=str(tmp_path),
        TENANCY_TEST_FAULTS=str(tmp_path / "faults.json"),
    )
    with pytest.raises(InsecureConfigurationError) as caught:
        WorkerSettings.load()
    assert [p.split(" ", 1)[0] for p in caught.value.problems] == ["TENANCY_TEST_FAULTS"]


def test_a_group_is_checked_once_however_it_is_inherited(env):
    class Twice(
        SigningKeySettings, DatabaseSettings, SigningKeySettings.__base__
    ):  # Settings twice in the MRO
        pass

    env(APP_ENV="production")
    with pytest.raises(InsecureConfigurationError) as caught:
        Twice.load()
    assert sorted(p.split(" ", 1)[0] for p in caught.value.problems) == [
        "DATABASE_SSL_MODE",
        "JWT_SECRET_KEY",
    ]


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("nats://nats:4222", "no user and password"),
        ("tls://nats:4222", "no user and password"),
        ("nats://gateway:pw@nats:4222", "is not tls"),
    ],
)
def test_production_refuses_nats_without_credentials_or_tls(env, url, needle):
    env(**{**SAFE_PRODUCTION, "NATS_URL": url})
    with pytest.raises(InsecureConfigurationError) as caught:
        Settings.load()
    assert any(needle in p for p in caught.value.problems)


def test_identity_in_production_sends_mail_over_smtp_with_https_links(env):
    env(**SAFE_PRODUCTION)
    with pytest.raises(InsecureConfigurationError) as caught:
        IdentitySettings.load()
    problems = "\n".join(caught.value.problems)
    assert "MAIL_SMTP_HOST" in problems and "PUBLIC_URL" in problems and "MAIL_FROM" in problems
    env(
        MAIL_SMTP_HOST="smtp.example.com",
        PUBLIC_URL="https://app.example.com",
        MAIL_FROM="Example <no-reply@example.com>",
    )
    settings = IdentitySettings.load()
    assert settings.argon2_memory_cost == 19456 and settings.access_token_ttl == 900

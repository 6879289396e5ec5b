"""The logins' bootstrap SQL: who gets which database-wide right, and no password in clear."""

from saas.common.db_roles import AUDIT, MIGRATE, TENANCY, bootstrap_statements, scram_verifier


def test_only_the_migration_and_tenancy_logins_may_create_schemas():
    sql = bootstrap_statements("saas", {})
    creators = [s.split(" TO ")[1] for s in sql if s.startswith("GRANT CREATE ON DATABASE")]
    assert creators == [MIGRATE.name, TENANCY.name]
    assert "GRANT CREATE ON SCHEMA public TO saas_migrate" in sql
    assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in sql


def test_the_audit_login_is_given_audit_writer_and_nothing_else():
    memberships = [s for s in bootstrap_statements("saas", {}) if s.startswith("GRANT audit_")]
    assert memberships == [f"GRANT audit_writer TO {AUDIT.name}"]


def test_passwords_reach_the_server_only_as_scram_secrets():
    secret = scram_verifier("correct horse", salt=b"0123456789abcdef")
    sql = bootstrap_statements("saas", {AUDIT.name: secret})
    assert f"ALTER ROLE {AUDIT.name} PASSWORD '{secret}'" in sql
    assert not any("correct horse" in s for s in sql)
    assert secret.startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$")
    assert scram_verifier("correct horse") != scram_verifier("correct horse")  # salted


def test_the_database_name_is_quoted():
    sql = bootstrap_statements('we"ird', {})
    assert 'GRANT CONNECT ON DATABASE "we""ird" TO saas_migrate' in sql

"""Who may see, retry and delete a tenant; who may change and delete a project; what a page's
cursor is; what makes two creates the same request."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from saas.common.contracts.identity import Role
from saas.common.contracts.tenancy import CreateTenant, TenantStatus
from saas.common.errors import ErrorCode, ServiceError
from saas.common.tokens import Claims
from saas.tenancy import projects, tenants
from saas.tenancy.directory import Tenant

CREATOR, SOMEONE = str(uuid.uuid4()), str(uuid.uuid4())


def claims(user_id: str, admin: bool = False) -> Claims:
    return Claims(user_id, "jti", None, admin, 0.0, "raw")


def tenant(status: TenantStatus) -> Tenant:
    now = datetime.now(UTC)
    return Tenant(str(uuid.uuid4()), "acme", "Acme", status, now, now, CREATOR, None)


@pytest.mark.parametrize("status", list(TenantStatus))
def test_a_member_sees_the_tenant_whatever_its_status(status):
    assert tenants.may_see(tenant(status), claims(SOMEONE), Role.MEMBER)


@pytest.mark.parametrize(
    ("status", "sees"),
    [
        (TenantStatus.PROVISIONING, True),
        (TenantStatus.FAILED, True),
        (TenantStatus.READY, False),  # by then they are its owner, or were removed
        (TenantStatus.DELETING, False),
    ],
)
def test_its_creator_who_is_no_member_sees_it_only_while_unfinished(status, sees):
    assert tenants.may_see(tenant(status), claims(CREATOR), None) is sees


def test_nobody_else_sees_it_but_platform_administrators():
    assert not tenants.may_see(tenant(TenantStatus.FAILED), claims(SOMEONE), None)
    assert tenants.may_see(tenant(TenantStatus.READY), claims(SOMEONE, admin=True), None)


def test_retry_is_for_the_creator_and_owners():
    failed = tenant(TenantStatus.FAILED)
    assert tenants.may_retry(failed, claims(CREATOR), None)
    assert tenants.may_retry(failed, claims(SOMEONE), Role.OWNER)
    assert not tenants.may_retry(failed, claims(SOMEONE), Role.ADMIN)


def test_delete_is_for_owners_and_for_the_creator_of_a_failed_tenant():
    ready, failed = tenant(TenantStatus.READY), tenant(TenantStatus.FAILED)
    assert tenants.may_delete(ready, claims(SOMEONE), Role.OWNER)
    assert not tenants.may_delete(ready, claims(SOMEONE), Role.ADMIN)
    assert not tenants.may_delete(ready, claims(CREATOR), Role.MEMBER)
    assert tenants.may_delete(failed, claims(CREATOR), None)
    assert not tenants.may_delete(replace(failed, created_by=SOMEONE), claims(CREATOR), None)


def test_the_same_body_is_the_same_request_whatever_the_key():
    a = CreateTenant(slug="acme", name="Acme", idempotency_key="k1")
    assert tenants.request_fingerprint(a) == tenants.request_fingerprint(
        CreateTenant(slug="acme", name="Acme", idempotency_key="k2")
    )
    assert tenants.request_fingerprint(a) != tenants.request_fingerprint(
        CreateTenant(slug="acme", name="Acme Inc", idempotency_key="k1")
    )


@pytest.mark.parametrize(
    ("role", "user", "may"),
    [
        (Role.MEMBER, CREATOR, True),  # its creator
        (Role.MEMBER, SOMEONE, False),
        (Role.ADMIN, SOMEONE, True),
        (Role.OWNER, SOMEONE, True),
    ],
)
def test_a_project_is_changed_by_its_creator_admins_and_owners(role, user, may):
    assert projects.may_update(role, user, CREATOR) is may


def test_a_project_is_deleted_by_admins_and_owners_only():
    assert [projects.may_delete(r) for r in (Role.MEMBER, Role.ADMIN, Role.OWNER)] == [
        False,
        True,
        True,
    ]


def test_a_cursor_round_trips_and_a_forged_one_says_what_is_wrong():
    at, pid = datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4()
    assert projects.decode_cursor(projects.encode_cursor(at, pid)) == (at, pid)
    for forged in ("nonsense", "eyJ0IjogMX0", ""):
        with pytest.raises(ServiceError) as caught:
            projects.decode_cursor(forged)
        assert caught.value.code is ErrorCode.VALIDATION_ERROR
        assert caught.value.message.startswith("cursor:")


def test_a_project_id_that_is_no_uuid_is_simply_not_found():
    with pytest.raises(ServiceError) as caught:
        projects.project_id("../../etc")
    assert caught.value.code is ErrorCode.NOT_FOUND


class NoDatabase:
    def session(self):
        raise AssertionError("a hostile slug reached the database")


@pytest.mark.parametrize(
    "slug",
    ["acme; DROP SCHEMA public", "../x", "tenant_acme", "ACME", 'a"b', "public", "template", ""],
)
async def test_a_slug_that_can_name_no_tenant_never_reaches_the_database(slug):
    from saas.tenancy.directory import TenantDirectory

    assert await TenantDirectory(NoDatabase()).find(slug) is None

import pytest

from saas.common.tenant_names import (
    InvalidSlugError,
    quote_schema,
    schema_for,
    validate_schema_name,
    validate_slug,
)


@pytest.mark.parametrize("slug", ["acme", "a1b", "acme-corp", "x" * 40, "team-42-eu"])
def test_valid_slugs(slug):
    assert validate_slug(slug) == slug


@pytest.mark.parametrize(
    "slug",
    [
        "ab",
        "x" * 41,
        "Acme",
        "acme--corp",
        "-acme",
        "acme-",
        "acme_corp",
        'acme"; DROP SCHEMA public; --',
        "acme corp",
        "ácme",
        "public",
        "admin",
        "",
        "acme\n",
    ],
)
def test_invalid_slugs(slug):
    with pytest.raises(InvalidSlugError):
        validate_slug(slug)


def test_schema_name_replaces_hyphens():
    assert schema_for("acme-corp-eu") == "tenant_acme_corp_eu"


@pytest.mark.parametrize(
    "name",
    [
        "public",
        "tenant_",
        "tenant_Acme",
        'tenant_a"b',
        "tenant_a;drop",
        "identity",
        "tenant_" + "a" * 60,
    ],
)
def test_schema_names_are_checked_again(name):
    with pytest.raises(InvalidSlugError):
        validate_schema_name(name)


def test_quoted_schema():
    assert quote_schema("tenant_acme") == '"tenant_acme"'

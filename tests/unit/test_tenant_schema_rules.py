"""When a schema lacks migrations, and which schemas a backup holds."""

from saas.tenancy.backups import backup_path, schemas_in_listing
from saas.tenancy.schema_rules import is_behind

REVISIONS = ["0001", "0002", "0003"]


def test_a_schema_at_an_older_revision_is_behind():
    assert is_behind("0001", REVISIONS) and is_behind("0002", REVISIONS)
    assert is_behind(None, REVISIONS)  # no version table: nothing applied


def test_a_schema_at_the_head_or_newer_than_this_code_is_not_behind():
    assert not is_behind("0003", REVISIONS)
    assert not is_behind("0004-from-a-later-release", REVISIONS)


LISTING = """;
; Archive created at 2026-11-29 12:40:37 UTC
;     dbname: saas
;
8; 2615 16437 SCHEMA - tenant_acme saas_tenancy
229; 1259 16438 TABLE tenant_acme projects saas_tenancy
2586; 0 16438 TABLE DATA tenant_acme projects saas_tenancy
2438; 2606 16445 CONSTRAINT tenant_acme projects projects_pkey saas_tenancy
2436; 1259 16446 INDEX tenant_acme ix_projects_created_at_id saas_tenancy
2440; 2606 16447 FK CONSTRAINT tenant_acme cards fk_cards_board saas_tenancy
2441; 0 16448 SEQUENCE SET tenant_acme ticket_numbers saas_tenancy
"""


def test_the_schemas_of_a_backup_come_from_its_table_of_contents():
    assert schemas_in_listing(LISTING) == {"tenant_acme"}
    other = LISTING + "99; 1259 1 TABLE tenant_other secrets saas_tenancy\n"
    assert schemas_in_listing(other) == {"tenant_acme", "tenant_other"}


def test_a_backup_file_is_named_by_its_schema_and_a_safe_label(tmp_path):
    path = backup_path(tmp_path, "tenant_acme", "tenant-deletion-1/../x")
    assert path.parent == tmp_path
    assert path.name == "tenant_acme-tenant-deletion-1----x.dump"

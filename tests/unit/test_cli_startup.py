"""`saas` starts by importing what the invoked command uses, nothing more: its help, `saas run`'s
and the process declarations never load the heavy stack, and `saas tenants migrate-all` with
nothing to do never loads Alembic. Asserted on the modules a fresh interpreter imported, not on
a time, so a loaded machine cannot make it flaky."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

from saas.common import cli as saas_cli
from saas.common.migrations import TENANT_SECTION, owner_sections, read_chain

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {
    "alembic",
    "sqlalchemy",
    "asyncpg",
    "temporalio",
    "fastapi",
    "starlette",
    "uvicorn",
    "nats",
    "pydantic",
}


def imported_by(code: str) -> set[str]:
    """The heavy top-level packages a fresh interpreter has imported after running `code`."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        heavy = {sorted(HEAVY)!r}
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))))
        """)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def help_of(*words: str) -> str:
    return f"""
        import contextlib, io
        from saas.common.cli import cli
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.main({[*words, "--help"]!r}, prog_name="saas", standalone_mode=False)
            except SystemExit:
                pass
        """


@pytest.mark.parametrize("words", [(), ("tenants",), ("run",), ("dev",)], ids=" ".join)
def test_help_loads_none_of_the_heavy_stack(words):
    assert imported_by(help_of(*words)) == set()


def test_the_process_declarations_load_none_of_the_heavy_stack():
    code = "from saas.common.cli import discover_processes\nassert discover_processes()\n"
    assert imported_by(code) == set()


def test_migrate_all_with_nothing_to_do_loads_neither_alembic_nor_sqlalchemy():
    """What the command imports and runs before its query: no Alembic, no SQLAlchemy (the plan
    goes through asyncpg alone; the integration test runs it against a database)."""
    code = """
        import click
        from saas.common.cli import cli
        from saas.common.migrations import find_alembic_ini, tenant_revisions
        from saas.tenancy import migrate_all
        from saas.tenancy.settings import ToolSettings
        cli.get_command(click.Context(cli), "tenants").get_command(None, "migrate-all")
        assert tenant_revisions(find_alembic_ini())
        """
    assert imported_by(code) == {"pydantic"}  # the settings


def test_the_listing_describes_each_builtin_as_its_own_help_does():
    ctx = click.Context(saas_cli.cli)
    for name in saas_cli.BUILTINS:
        stand_in = saas_cli.cli.described(ctx, name)
        real = saas_cli.cli.get_command(ctx, name)
        assert real is not None and stand_in is not None
        for limit in (20, 45, 74, 200):
            assert stand_in.get_short_help_str(limit) == real.get_short_help_str(limit), name


def test_the_revisions_read_from_source_are_alembics():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    ini = ROOT / "migrations" / "alembic.ini"
    for section in [*owner_sections(ini), TENANT_SECTION]:
        script = ScriptDirectory.from_config(Config(str(ini), ini_section=section))
        (head,) = script.get_heads()
        expected = [s.revision for s in reversed(list(script.walk_revisions("base", head)))]
        assert read_chain(ini, section) == expected, section


def revision_file(folder: Path, revision: str, down: str | tuple[str, ...] | None) -> None:
    (folder / f"{revision}_x.py").write_text(
        f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\n"
    )


@pytest.mark.parametrize(
    ("files", "chain"),
    [
        ([("a", None), ("b", "a"), ("c", "b")], ["a", "b", "c"]),
        ([("a", None), ("b", "a"), ("c", "a")], None),  # two heads
        ([("a", None), ("b", "a"), ("c", "a"), ("d", ("b", "c"))], None),  # a merge
        ([("b", "a")], None),  # its parent is missing
        ([], None),
    ],
)
def test_anything_but_a_plain_chain_is_left_to_alembic(tmp_path, files, chain):
    (tmp_path / "tree" / "versions").mkdir(parents=True)
    for revision, down in files:
        revision_file(tmp_path / "tree" / "versions", revision, down)
    (tmp_path / "alembic.ini").write_text("[tenant]\nscript_location = %(here)s/tree\n")
    assert read_chain(tmp_path / "alembic.ini", "tenant") == chain

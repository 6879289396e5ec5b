"""Every command the guides give exists: each `saas ...` resolves to a command of the installed
CLI and uses only options it has, each `make <target>` is a target of the Makefile, and each
repository path they name is there."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from saas.common import cli as saas_cli

ROOT = Path(__file__).resolve().parents[2]
GUIDES = [
    ROOT / "docs" / "production.md",
    ROOT / "README.md",
    *sorted((ROOT / "infra").rglob("README.md")),
]
# `saas` as a command: at the start of a line or code span, or after a shell separator or an
# environment assignment; up to the end of the command (a code span's end, a separator, a comment).
SAAS = re.compile(r"(?:^|[`;&|(]\s*|\$\s+|\w+=\S+\s+|\.venv/bin/)saas\s+([^`;&|#\n]*)", re.M)
MAKE = re.compile(r"(?:^|`|\$\s+)make\s+([a-z][\w-]*)", re.M)
PATH = re.compile(
    r"(?<![\w./-])((?:infra|docs|migrations|services|libs|tests)/[\w./-]*\w|compose[\w.]*\.yml)"
)


def code(text: str) -> str:
    """The guide's code: fenced blocks and inline code spans."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join(blocks + [f"`{s}`" for s in spans])


def saas_commands(path: Path) -> list[str]:
    found = []
    for m in SAAS.finditer(code(path.read_text())):
        words = m.group(1).strip()
        if words and not words.startswith(("...", "<")):
            found.append(words)
    return sorted(set(found))


def root_command() -> click.Group:
    saas_cli._register_builtins()
    return saas_cli.cli


def resolve(words: list[str], *, open_ended: bool = False) -> str | None:
    """Why `saas <words>` is not a command of the CLI, or None. `open_ended` (`saas tenants ...`)
    names a group of commands, not one."""
    command: click.Command = root_command()
    ctx = click.Context(command)
    path = ["saas"]
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            if command.invoke_without_command and not command.list_commands(ctx):
                break
            return f"{' '.join(path)} has no command {rest[0]!r}"
        path.append(rest.pop(0))
        command = sub
    if (
        isinstance(command, click.Group)
        and not command.invoke_without_command
        and not rest
        and not open_ended
    ):
        return f"{' '.join(path)} needs a command"
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    for word in rest:
        if word.startswith("-") and word.split("=")[0] not in options | {"--help"}:
            return f"{' '.join(path)} has no option {word}"
    return None


CASES = [(g, c) for g in GUIDES for c in saas_commands(g)]


def test_the_guides_give_commands():
    commands = {c for g, c in CASES if g.name == "production.md"}
    assert {"migrate", "db bootstrap-roles", "bus users -o infra/nats/auth.conf"} <= commands
    assert any(c.startswith("tenants migrate-all") for c in commands)


@pytest.mark.parametrize(
    ("guide", "command"), CASES, ids=[f"{g.relative_to(ROOT)}: saas {c}" for g, c in CASES]
)
def test_every_saas_command_exists_with_its_options(guide, command):
    given = shlex.split(command)
    words = [w for w in given if not re.fullmatch(r"<[^>]*>|\.\.\.|\[.*", w)]
    why = resolve(words, open_ended=given[-1] == "...")
    assert why is None, why


def test_the_check_tells_real_commands_from_made_up_ones():
    assert resolve(["db", "bootstrap-roles"]) is None
    assert resolve(["events", "outbox", "list", "--schema", "identity"]) is None
    assert resolve(["audit", "verify", "--all"]) is None
    assert resolve(["db", "bootstrap"]) is not None
    assert resolve(["audit", "verify", "--everything"]) is not None
    assert resolve(["events"]) is not None


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_exists(guide):
    targets = set(MAKE.findall(code(guide.read_text())))
    assert targets - makefile_targets() == set()


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_exists(guide):
    named = set(PATH.findall(code(guide.read_text())))
    missing = {p for p in named if not (ROOT / p).exists() and "<" not in p and "*" not in p}
    assert missing == set()

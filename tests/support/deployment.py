"""The deployment files as the code sees them: rendered kustomizations, each process's spec and
settings, and what a process's settings say it reads (environment names, secrets, servers)."""

from __future__ import annotations

import re
import subprocess
import sys
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from saas.common.cli import ProcessSpec, discover_processes
from saas.common.settings import (
    BusSettings,
    DatabaseSettings,
    RedisSettings,
    TemporalSettings,
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
BASE_CONFIG = K8S / "base" / "config"
KUBECTL = Path(sys.executable).parent / "kubectl"

# Settings whose values are secrets: each comes from the Secret, never from a ConfigMap.
SECRET_SETTINGS = frozenset(
    {"DATABASE_URL", "NATS_URL", "REDIS_URL", "JWT_SECRET_KEY", "MAIL_SMTP_PASSWORD"}
)

# The servers a settings group connects to, by port (what the egress policies must allow).
POSTGRES_PORTS = frozenset({5432, 6432})  # PostgreSQL, PgBouncer
SERVER_PORTS: dict[type, frozenset[int]] = {
    DatabaseSettings: POSTGRES_PORTS,
    BusSettings: frozenset({4222}),
    RedisSettings: frozenset({6379}),
    TemporalSettings: frozenset({7233}),
}
SMTP_PORTS = frozenset({587, 465})


def kustomizations() -> list[Path]:
    """Every kustomization that renders on its own (components only exist inside one): the
    services' (infra/k8s) and the servers' (infra/nats)."""
    found = []
    for path in sorted((ROOT / "infra").rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text()).get("kind", "Kustomization") == "Kustomization":
            found.append(path.parent)
    return found


@cache
def render(kustomization: Path) -> str:
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(kustomization: Path, kind: str | None = None) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(render(kustomization)) if d]
    return [d for d in docs if kind is None or d["kind"] == kind]


def by_name(kustomization: Path, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects(kustomization, kind)}


# -- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Process:
    spec: ProcessSpec
    settings: type[BaseSettings]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def image(self) -> str:
        """saas-<service>: the image of the package whose module builds the process."""
        return "saas-" + self.spec.target.split(".")[1]

    def reads(self) -> set[str]:
        return env_names(self.settings)

    def secrets(self) -> dict[str, str]:
        """Each secret setting it reads, and the key of saas-secrets that holds its value."""
        keys = {}
        for name in self.reads() & SECRET_SETTINGS:
            if name == "DATABASE_URL":
                assert self.spec.database_login is not None, self.name
                login = self.spec.database_login.removeprefix("saas_").upper()
                keys[name] = f"{login}_DATABASE_URL"
            elif name == "NATS_URL":
                assert self.spec.bus is not None, self.name
                keys[name] = f"{self.spec.bus.user.upper().replace('-', '_')}_NATS_URL"
            else:
                keys[name] = name
        return keys

    def server_ports(self) -> set[int]:
        ports: set[int] = set()
        for group, group_ports in SERVER_PORTS.items():
            if issubclass(self.settings, group):
                ports |= group_ports
        if "MAIL_SMTP_HOST" in self.reads():
            ports |= SMTP_PORTS
        return ports


def settings_class(spec: ProcessSpec) -> type[BaseSettings]:
    """The settings class the process's `build(settings: X | None = None)` takes."""
    module, _, function = spec.target.partition(":")
    build = getattr(__import__(module, fromlist=[function]), function)
    hint = typing.get_type_hints(build)["settings"]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


@cache
def processes() -> dict[str, Process]:
    return {s.name: Process(s, settings_class(s)) for s in discover_processes()}


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (pydantic-settings: the field's name, or
    each of its aliases, in upper case)."""
    names = set()
    for field, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(field.upper())
    return names


# -- the image -------------------------------------------------------------------------------


@cache
def image_env() -> dict[str, str]:
    """The ENV the Dockerfile sets in the runtime image."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', line[4:]):
                env[key] = value.strip('"')
    return env


def ops_port(process: Process) -> int:
    env = image_env()
    if process.spec.public is not None:
        return int(env[process.spec.port_env])
    return int(env["OPS_PORT"])


def public_port(process: Process) -> int | None:
    if process.spec.public is None:
        return None
    return int(image_env()[process.spec.public.port_env])


__all__ = [
    "BASE_CONFIG",
    "K8S",
    "POSTGRES_PORTS",
    "ROOT",
    "SECRET_SETTINGS",
    "Process",
    "by_name",
    "env_names",
    "image_env",
    "kustomizations",
    "objects",
    "ops_port",
    "processes",
    "public_port",
    "render",
]

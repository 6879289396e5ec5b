"""The production NATS configuration is one nats-server accepts, with every service's user."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from saas.devstack.servers.base import venv_binary

CONF = Path(__file__).resolve().parents[2] / "infra" / "nats" / "nats.conf"


def test_nats_server_accepts_the_production_configuration():
    auth = (CONF.parent / "auth.conf").read_text()
    variables = set(re.findall(r"\$([A-Z_]+_NATS_PASSWORD)", auth))
    assert {"IDENTITY_NATS_PASSWORD", "GATEWAY_NATS_PASSWORD", "OPS_NATS_PASSWORD"} <= variables
    env = {**os.environ, **{v: "$2a$11$" + "x" * 53 for v in variables}}
    result = subprocess.run(
        [str(venv_binary("nats-server")), "-c", str(CONF), "-t"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

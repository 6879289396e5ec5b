"""`saas gateway`: run the public HTTP gateway."""

from __future__ import annotations

import click

from saas.common.devstack.supervisor import ProcessSpec

PROCESSES = [
    ProcessSpec("gateway", ("gateway",), 8000, "GATEWAY_OPS_URL", "GATEWAY_PORT", order=90)
]


@click.command()
def command() -> None:
    """Run the gateway: the public API with /health, /health/ready and /metrics."""
    from saas.gateway.main import run

    run()

"""`saas identity`: run the identity service."""

from __future__ import annotations

import click

from saas.common.devstack.supervisor import ProcessSpec

PROCESSES = [
    ProcessSpec("identity", ("identity",), 8001, "IDENTITY_OPS_URL", "IDENTITY_OPS_PORT", order=10)
]


@click.group(invoke_without_command=True)
@click.pass_context
def command(ctx: click.Context) -> None:
    """Run the identity service (NATS responders plus /health, /health/ready, /metrics)."""
    if ctx.invoked_subcommand is None:
        from saas.identity.main import build

        build().run()

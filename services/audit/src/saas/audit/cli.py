"""`saas audit`: run the audit service."""

from __future__ import annotations

import click

from saas.common.devstack.supervisor import ProcessSpec

PROCESSES = [ProcessSpec("audit", ("audit",), 8003, "AUDIT_OPS_URL", "AUDIT_OPS_PORT", order=10)]


@click.group(invoke_without_command=True)
@click.pass_context
def command(ctx: click.Context) -> None:
    """Run the audit service (NATS responders plus /health, /health/ready, /metrics)."""
    if ctx.invoked_subcommand is None:
        from saas.audit.main import build

        build().run()

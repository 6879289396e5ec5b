"""`saas tenancy` runs the tenancy service; `saas tenancy worker` runs its Temporal worker."""

from __future__ import annotations

import click

from saas.common.devstack.supervisor import ProcessSpec

PROCESSES = [
    ProcessSpec("tenancy", ("tenancy",), 8002, "TENANCY_OPS_URL", "TENANCY_OPS_PORT", order=10),
    ProcessSpec(
        "tenancy-worker",
        ("tenancy", "worker"),
        8004,
        "TENANCY_WORKER_OPS_URL",
        "TENANCY_WORKER_OPS_PORT",
        order=20,
    ),
]


@click.group(invoke_without_command=True)
@click.pass_context
def command(ctx: click.Context) -> None:
    """Run the tenancy service, or one of its subcommands."""
    if ctx.invoked_subcommand is None:
        from saas.tenancy.main import build

        build().run()


@command.command()
def worker() -> None:
    """Run the Temporal worker for tenant provisioning and deletion."""
    from saas.tenancy.worker import build

    build().run()

"""`saas dev`: the whole stack on one machine, with one command and no Docker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import click

from saas.common.cli import discover_processes
from saas.devstack.database import set_up_logins
from saas.devstack.servers import EmbeddedStack, StackError, StackPorts
from saas.devstack.supervisor import Supervisor

# Which embedded server stands in for which connection variable.
SERVER_FOR = {
    "DATABASE_URL": "postgres",
    "NATS_URL": "nats",
    "REDIS_URL": "valkey",
    "TEMPORAL_HOST": "temporal",
}


def _write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))


@click.command()
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=lambda: os.environ.get("DEVSTACK_DIR", ".devstack"),
    show_default=".devstack",
    help="where data, logs, mail and the env file live",
)
@click.option(
    "--ready-timeout", default=90.0, show_default=True, help="seconds to wait for every process"
)
def dev(root: Path, ready_timeout: float) -> None:
    """Start embedded servers (unless their URLs are set), migrate, and run every service."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "mail").mkdir(exist_ok=True)
    missing = {server for var, server in SERVER_FOR.items() if not os.environ.get(var)}
    stack = EmbeddedStack(root, StackPorts.from_env())
    supervisor: Supervisor | None = None
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        started = time.monotonic()
        if missing:
            click.echo(f"starting embedded {', '.join(sorted(missing))} in {root} ...")
            stack.start(only=missing)
        env = {var: os.environ.get(var) or stack.env()[var] for var in SERVER_FOR}
        # The embedded NATS has a user per service; a given one is used as it is by everyone.
        nats = stack.nats_logins() if "nats" in missing else None
        env["TEMPORAL_UI_URL"] = os.environ.get("TEMPORAL_UI_URL") or stack.env().get(
            "TEMPORAL_UI_URL", ""
        )
        env["MAIL_DIR"] = str(root / "mail")
        env.setdefault("APP_ENV", os.environ.get("APP_ENV", "development"))
        os.environ.update(env)

        from saas.common.commands.migrate import release

        # The given or embedded DATABASE_URL is an administrator: it creates the logins, and
        # from here on DATABASE_URL is the migration login's (what tools use).
        click.echo("setting up database logins, migrations and stream configuration ...")
        logins = set_up_logins(env["DATABASE_URL"], root)
        env.update(logins.env())
        os.environ.update(logins.env())
        release(lambda _: None)  # with NATS_URL still the operators' user: it configures streams
        if nats is not None:
            env.update(nats.env())  # from here on, NATS_URL is the developers' reader

        specs = discover_processes()
        ports = {s.name: int(os.environ.get(s.port_env, s.default_port)) for s in specs}
        public_ports = {
            s.name: int(os.environ.get(s.public.port_env, s.public.default_port))
            for s in specs
            if s.public is not None
        }
        supervisor = Supervisor(
            env, database_urls=logins.urls, nats_urls=nats.urls if nats else None
        )
        children = supervisor.start(specs, ports, public_ports)
        click.echo(f"starting {', '.join(c.spec.name for c in children)} ...")
        supervisor.wait_ready(ready_timeout)

        urls = {key: url for c in children for key, url in c.urls().items()}
        gateway_url = urls.get("GATEWAY_URL", "")
        gateway_ops = urls.get("GATEWAY_OPS_URL", "")
        _write_env(root / "env", {**env, **urls})
        click.echo(
            f"\nready in {time.monotonic() - started:.1f}s\n"
            f"  API docs     {gateway_url}/docs\n"
            f"  status       {gateway_url}/api/v1/status\n"
            f"  gateway ops  {gateway_ops}/health/ready  {gateway_ops}/metrics  "
            f"{gateway_ops}/status\n"
            f"  Temporal UI  {env['TEMPORAL_UI_URL'] or '(external Temporal)'}\n"
            f"  settings     {root / 'env'}\n"
            f"  mail         {root / 'mail'}\n"
            "Press Ctrl-C to stop everything."
        )
        while not stopping:
            dead = supervisor.exited()
            if dead:
                names = ", ".join(
                    f"{c.spec.name} (exit {c.process.returncode})" for c in dead if c.process
                )
                raise StackError(f"stopped because a process exited: {names}")
            time.sleep(0.3)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        click.echo("stopping ...")
        if supervisor is not None:
            supervisor.stop()
        stack.stop()
        click.echo("stopped.")

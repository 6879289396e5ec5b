"""`saas events streams apply|check`: the streams' one owner, and the drift check operators run."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from saas.common.bus import Bus


def _settings() -> Any:
    """What configuring the streams reads: where NATS is and the streams' limits. (The settings,
    the NATS client and the streams' code are imported when a command runs, not for `--help`.)"""
    from saas.common.settings import BusSettings, EventSettings

    class StreamSettings(BusSettings, EventSettings):
        pass

    return StreamSettings.load()


async def _on_bus(work):  # type: ignore[no-untyped-def]
    from saas.common.bus import Bus

    settings = _settings()
    bus = Bus(settings.nats_url, name="saas-streams")
    await bus.connect()
    try:
        return await work(bus, settings)
    finally:
        await bus.close()


def apply() -> list[str]:
    """Create or update the streams from the environment's settings (a release step)."""
    from saas.common.events.stream import apply_streams

    return asyncio.run(_on_bus(lambda bus, s: apply_streams(bus.js, s)))


@click.group()
def streams() -> None:
    """The JetStream streams (EVENTS, DEADLETTER): configured here, never by the services."""


@streams.command(name="apply")
def apply_command() -> None:
    """Create or update the streams to match EVENTS_* settings (run with the migrations)."""
    for line in apply():
        click.echo(line)


@streams.command()
def check() -> None:
    """Compare the streams with the EVENTS_* settings; exit 1 on drift or a missing stream."""
    from saas.common.events.stream import StreamCheck
    from saas.common.metrics import Metrics

    async def work(bus: Bus, settings: Any) -> dict[str, list[str]]:
        return await StreamCheck(bus, settings, Metrics()).check()

    found = asyncio.run(_on_bus(work))
    for stream, problems in found.items():
        for problem in problems:
            click.echo(f"{stream}: {problem}")
    if found:
        raise SystemExit(1)
    click.echo("streams match the settings")

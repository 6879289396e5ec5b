"""`saas events asyncapi`: write the event contract for other teams."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import orjson


@click.group()
def events() -> None:
    """The domain event contract."""


@events.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="file to write (default: standard output)",
)
def asyncapi(output: Path | None) -> None:
    """Print (or write) the AsyncAPI 3.0 document generated from the event catalogue."""
    from saas.common.events.asyncapi import build_document

    text = (
        orjson.dumps(build_document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        + "\n"
    )
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}")


@events.group(name="dead-letters")
def dead_letters_group() -> None:
    """What consumers gave up on (stream DEADLETTER)."""


async def _with_bus(work):  # type: ignore[no-untyped-def]
    from saas.common.bus import Bus
    from saas.common.settings import BusSettings

    bus = Bus(BusSettings.load().nats_url, name="saas-cli")
    await bus.connect()
    try:
        return await work(bus.js)
    finally:
        await bus.close()


@dead_letters_group.command(name="list")
@click.option("--consumer", default=None, help="only this consumer's (default: all)")
def list_dead_letters(consumer: str | None) -> None:
    """List dead letters, oldest first, with the reason each was given up on."""
    from saas.common.events.deadletters import dead_letters

    async def work(js):  # type: ignore[no-untyped-def]
        return [letter async for letter in dead_letters(js, consumer)]

    letters = asyncio.run(_with_bus(work))
    if not letters:
        click.echo("no dead letters")
    for d in letters:
        failures = f"\tfailures={d.failures}" if d.failures else ""
        click.echo(
            f"{d.seq}\t{d.consumer}\t{d.subject}\t{d.reason}\tdeliveries={d.deliveries}{failures}"
            f"\t{d.detail[:120]}"
        )


@dead_letters_group.command(name="replay")
@click.option("--consumer", required=True, help="whose dead letters to replay")
@click.option(
    "--seq", "seqs", type=int, multiple=True, help="only these DEADLETTER sequences (repeatable)"
)
def replay_dead_letters(consumer: str, seqs: tuple[int, ...]) -> None:
    """Publish dead letters again to their original subjects, once the cause is fixed."""
    from saas.common.events.deadletters import replay

    done = asyncio.run(_with_bus(lambda js: replay(js, consumer, set(seqs) or None)))
    click.echo(
        f"replayed {len(done)} dead letter(s)" + (f": {', '.join(map(str, done))}" if done else "")
    )

"""`saas events`: the event contract for other teams, dead letters, the outbox's quarantine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import orjson

from saas.common.commands.streams import streams


@click.group()
def events() -> None:
    """The domain event contract."""


events.add_command(streams)


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


@events.group(name="outbox")
def outbox_group() -> None:
    """Outbox rows the relay quarantined after OUTBOX_MAX_ATTEMPTS failures of their own."""


def _schema_option(f):  # type: ignore[no-untyped-def]
    def valid(ctx: click.Context, param: click.Parameter, value: str) -> str:
        from saas.common.tenant_names import InvalidSlugError, validate_identifier

        try:
            return validate_identifier(value)
        except InvalidSlugError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option(
        "--schema",
        required=True,
        callback=valid,
        help="the schema whose outbox to look at (identity, public, ...)",
    )(f)


async def _with_db(work):  # type: ignore[no-untyped-def]
    from saas.common.db import Database
    from saas.common.settings import DatabaseSettings

    db = Database.from_settings(DatabaseSettings.load(), application_name="saas-cli")
    try:
        return await work(db)
    finally:
        await db.dispose()


@outbox_group.command(name="list")
@_schema_option
def list_quarantined(schema: str) -> None:
    """List quarantined rows, oldest first, with the error that set each aside."""
    from saas.common.events.quarantine import quarantined

    rows = asyncio.run(_with_db(lambda db: quarantined(db, schema)))
    if not rows:
        click.echo(f"no quarantined rows in {schema}.outbox")
    for r in rows:
        click.echo(
            f"{r.seq}\t{r.event_id}\t{r.subject}\ttenant={r.tenant or '-'}\tattempts={r.attempts}"
            f"\tquarantined={r.quarantined_at.isoformat(timespec='seconds')}\t{r.last_error[:200]}"
        )


@outbox_group.command(name="retry")
@_schema_option
@click.option(
    "--seq", "seqs", type=int, multiple=True, help="only these outbox sequences (repeatable)"
)
def retry_quarantined(schema: str, seqs: tuple[int, ...]) -> None:
    """Hand quarantined rows back to the relay, once the cause is fixed."""
    from saas.common.events.quarantine import retry

    done = asyncio.run(_with_db(lambda db: retry(db, schema, set(seqs) or None)))
    click.echo(f"retried {len(done)} row(s)" + (f": {', '.join(map(str, done))}" if done else ""))

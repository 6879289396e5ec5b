"""`saas events asyncapi`: write the event contract for other teams."""

from __future__ import annotations

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

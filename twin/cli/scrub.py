"""`twin scrub`: filter messages through the scrubber, stdin to stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from twin.prepare.scrub import DEFAULT_REGIONS, Scrubber, ScrubConfig


def scrub_command(
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help='Read and write {"text": ...} objects, one per line.')
    ] = False,
    region: Annotated[
        list[str] | None,
        typer.Option(
            "--region", help="Phone region (ISO 3166), repeatable. Default: RU UA US GB PL DE."
        ),
    ] = None,
    blocklist: Annotated[
        Path | None,
        typer.Option(
            "--blocklist",
            help="File with one string per line to replace with <BLOCKED>.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
) -> None:
    """Replace secrets and personal data in messages read from stdin, one per line."""
    entries = blocklist.read_text(encoding="utf-8").splitlines() if blocklist else []
    config = ScrubConfig(regions=region or list(DEFAULT_REGIONS), blocklist=entries)
    scrubber = Scrubber(config)
    out = sys.stdout
    for number, line in enumerate(sys.stdin, start=1):
        line = line.rstrip("\n")
        if not jsonl:
            out.write(scrubber.scrub(line).text.replace("\n", " ") + "\n")
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError('expected an object with a string "text"')
        except ValueError as error:
            typer.echo(f"error: line {number}: not a JSON message: {error}", err=True)
            raise typer.Exit(code=2) from None
        result = scrubber.scrub(record["text"])
        record["text"] = result.text
        record["found"] = result.found
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def register(app: typer.Typer) -> None:
    """Add the `scrub` command to `app`.

    Args:
        app: the Typer application of the `twin` command line.
    """
    app.command("scrub")(scrub_command)

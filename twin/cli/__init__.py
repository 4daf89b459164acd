"""The ``twin`` command: one sub-command per stage, each a thin wrapper over the stage's entry
function (the web app calls the same functions)."""

from __future__ import annotations

import sys

import typer

from twin.cli import assist, chat, db, export, importer, prepare, scrub, telegram, train, web
from twin.errors import TwinError

app = typer.Typer(
    name="twin",
    help="Turn your private Telegram chats into a fine-tuned LLM that talks like you.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_all() -> None:
    for module in (telegram, importer, prepare, scrub, train, chat, export, assist, web, db):
        module.register(app)


def main() -> None:
    """Console entry point: runs the app and turns twin's errors into a message and exit 1."""
    _register_all()
    try:
        app(standalone_mode=False)
    except TwinError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except typer.Abort:
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise

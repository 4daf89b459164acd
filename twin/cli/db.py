"""``twin db upgrade``: apply the database migrations."""

from __future__ import annotations

import typer

from twin.config import get_settings
from twin.db import upgrade_database

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Alembic revision to reach.")) -> None:
    """Apply migrations (twin also does this on every start)."""
    settings = get_settings()
    upgrade_database(settings, revision)
    typer.echo(f"database at {settings.db_url} is up to date")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")

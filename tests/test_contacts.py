"""The ``twin import`` and ``twin contacts`` commands, through typer's test runner."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from twin.cli.importer import register
from twin.config import Settings

SAMPLE = Path(__file__).parent.parent / "samples" / "sample_export" / "result.json"


def make_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_import_prints_summary_without_a_tty(settings: Settings) -> None:
    runner = CliRunner()
    result = runner.invoke(make_app(), ["import", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "dialogs imported" in result.output and "bot_chat" in result.output
    again = runner.invoke(make_app(), ["import", str(SAMPLE)])
    assert "messages new" in again.output and "│ 0" in again.output


def test_contacts_lists_and_includes_excludes(settings: Settings) -> None:
    runner = CliRunner()
    app = make_app()
    assert runner.invoke(app, ["import", str(SAMPLE)]).exit_code == 0
    listed = runner.invoke(app, ["contacts"])
    assert listed.exit_code == 0
    assert "Маша" in listed.output and "Dan Whitaker" in listed.output
    assert "BotFather" not in listed.output
    excluded = runner.invoke(app, ["contacts", "--exclude", "мама", "-x", "dan whitaker"])
    assert excluded.exit_code == 0, excluded.output
    lines = {
        line.split("│")[2].strip(): line
        for line in excluded.output.splitlines()
        if line.count("│") > 5
    }
    assert "no" in lines["Мама"] and "no" in lines["Dan Whitaker"] and "yes" in lines["Маша"]
    included = runner.invoke(app, ["contacts", "--include", "Мама"])
    assert "yes" in next(line for line in included.output.splitlines() if "Мама" in line)


def test_unknown_contact_lists_close_matches(settings: Settings) -> None:
    runner = CliRunner()
    app = make_app()
    runner.invoke(app, ["import", str(SAMPLE)])
    result = runner.invoke(app, ["contacts", "--exclude", "Dan Whitaka"])
    assert result.exit_code != 0
    assert "No chat called 'Dan Whitaka'" in str(result.exception)
    assert "Dan Whitaker" in str(result.exception)

"""README stays honest: its commands and settings exist, its quick start is the Makefile's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twin.cli import _register_all, app
from twin.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _cli_help(*args: str) -> str:
    _register_all()
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_quick_start_targets_exist_and_ci_runs_the_readme_test_command() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("run", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target} target"
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "command", sorted(set(re.findall(r"^twin ([a-z-]+(?: [a-z-]+)?)", README, re.M)))
)
def test_every_command_in_the_readme_exists(command: str) -> None:
    words = command.split()
    # "twin db upgrade" is a sub-command; "twin train" followed by prose is one word.
    if len(words) == 2 and words[0] not in ("db", "model"):
        words = words[:1]
    _cli_help(*words)


def test_every_readme_setting_is_a_real_setting() -> None:
    documented = set(re.findall(r"`TWIN_([A-Z_]+)`", README))
    assert documented, "the README documents no settings"
    fields = {name.upper() for name in Settings.model_fields}
    assert documented <= fields, documented - fields

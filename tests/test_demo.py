"""`make demo` stays runnable: every stage of scripts/demo.py is a command line the CLI accepts.

CI runs the demo itself (`.ci/run`, after the tests); this catches a renamed command or option
in a second, without training anything.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest
import typer

from twin.cli import _register_all, app

ROOT = Path(__file__).resolve().parent.parent


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("base_model", ["demo", "gemma-3-270m"])
def test_every_stage_is_a_command_line_the_cli_accepts(base_model: str) -> None:
    demo = load_demo()
    _register_all()
    root = typer.main.get_command(app)
    plan = demo.stages(base_model=base_model, train_steps=4, pretrain_steps=10)
    assert [s.name for s in plan][::3] == ["import", "dataset in its tokens", "chat"]
    for stage in plan:
        command, args = root, list(stage.args)
        while isinstance(command, click.Group):
            name = args.pop(0)
            command = command.get_command(click.Context(command), name)
            assert command is not None, f"{stage.name}: no command {name!r}"
        # Parses and checks every option and argument without running the command.
        command.make_context(stage.name, args)


def test_make_demo_runs_the_script_and_ci_runs_make_demo() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:.*\n\t.*scripts/demo\.py", makefile, re.M)
    assert re.search(r"^make demo$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)

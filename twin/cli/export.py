"""``twin export``: a trained twin for other tools (transformers/vLLM, llama.cpp/Ollama)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from twin.config import get_settings
from twin.export.run import export_run


def export_command(
    run: Annotated[
        str | None, typer.Argument(help="Run id or run dir (default: the newest finished run).")
    ] = None,
    format: Annotated[
        str, typer.Option("--format", help="hf (transformers, vLLM) or gguf (llama.cpp, Ollama).")
    ] = "hf",
    quant: Annotated[str, typer.Option(help="GGUF weight type: f16, q8_0 or f32.")] = "q8_0",
    out: Annotated[
        Path | None, typer.Option(help="Output dir (default: <run dir>/export/<hf|gguf-QUANT>).")
    ] = None,
    me: Annotated[str, typer.Option(help="Your name as your turns are tagged.")] = "Me",
    peer: Annotated[str, typer.Option(help="The other person's default name.")] = "Friend",
) -> None:
    """Merge a run's adapter into its base model and export it (Hugging Face or GGUF)."""
    start = time.perf_counter()
    path = export_run(
        settings=get_settings(), run=run, fmt=format, quant=quant, out_dir=out, me=me, peer=peer
    )
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    typer.echo(f"exported to {path} ({size / 1e6:,.1f} MB in {time.perf_counter() - start:.1f} s)")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)

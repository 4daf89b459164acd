"""``twin export``: a finished run's twin (base + adapter merged) in a format other tools load.

Exports land in ``<run_dir>/export/<name>/`` (``hf``, ``gguf-f16``, ``gguf-q8_0``) unless an
``out_dir`` is given. Each is written to a temporary sibling and renamed into place, so an
interrupted export leaves nothing half-written; an existing export of the same name is replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from twin.config import Settings
from twin.dirs import dir_written_whole
from twin.errors import ExportError, RunError
from twin.runs import adapter_path, load_run, resolve_run_dir

ExportFormat = Literal["hf", "gguf"]
Quant = Literal["f16", "q8_0", "f32"]
FORMATS: tuple[str, ...] = ("hf", "gguf")
QUANTS: tuple[str, ...] = ("f16", "q8_0", "f32")
EXPORT_DIR = "export"


def export_name(fmt: str, quant: str) -> str:
    """The export's dir name under ``<run_dir>/export``.

    Args:
        fmt: ``hf`` or ``gguf``.
        quant: the GGUF tensor type (ignored for ``hf``).
    """
    return "hf" if fmt == "hf" else f"gguf-{quant}"


def export_run(
    *,
    settings: Settings,
    run: str | Path | None = None,
    fmt: str = "hf",
    quant: str = "q8_0",
    out_dir: Path | None = None,
    me: str = "Me",
    peer: str = "Friend",
) -> Path:
    """Merge a finished run's adapter into its base model and write it as ``fmt``.

    Args:
        settings: twin's settings (where runs live).
        run: a run id or run dir; None: the newest finished run.
        fmt: ``hf`` (transformers layout, safetensors) or ``gguf`` (llama.cpp / Ollama).
        quant: GGUF tensor type for the weight matrices: ``f16``, ``q8_0`` or ``f32``.
        out_dir: where the export goes; default ``<run_dir>/export/<hf|gguf-QUANT>``.
        me: my display name, as my turns are tagged (chat template default, stop strings).
        peer: the other person's name when a request names nobody.

    Returns:
        The export dir, absolute.
    """
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}.", hint="Use --format hf or gguf.")
    if quant not in QUANTS:
        raise ExportError(
            f"Unknown GGUF type {quant!r}.", hint=f"Use --quant {' or '.join(QUANTS)}."
        )
    try:
        run_dir = resolve_run_dir(settings=settings, run=run)
    except RunError as exc:
        raise ExportError(exc.message, hint=exc.hint) from exc
    # Loads torch and litgpt: here, where a model is exported, so that listing exports stays light.
    import torch

    from twin.train.merge import MERGED_FILE, merge_adapter

    record = load_run(run_dir)
    target = (out_dir or run_dir / EXPORT_DIR / export_name(fmt, quant)).expanduser().resolve()
    with dir_written_whole(target) as tmp:
        merged_file = merge_adapter(
            base_model_dir=record.base_model_dir,
            adapter_file=adapter_path(run_dir),
            lora=record.lora,
            out_file=tmp / MERGED_FILE,
        )
        weights = torch.load(merged_file, mmap=True, weights_only=True)
        if fmt == "hf":
            from twin.export.hf import write_hf

            write_hf(
                base_model_dir=record.base_model_dir, weights=weights, out_dir=tmp, me=me, peer=peer
            )
        else:
            from twin.export.gguf_file import write_gguf

            write_gguf(
                base_model_dir=record.base_model_dir,
                weights=weights,
                out_dir=tmp,
                quant=quant,
                me=me,
                peer=peer,
                name=f"twin-{record.run_id}",
            )
        del weights
        merged_file.unlink()
    return target


def list_exports(run_dir: Path) -> list[tuple[str, list[tuple[str, int]]]]:
    """The exports of a run: ``(name, [(file name, size in bytes), …])``, by name."""
    root = run_dir / EXPORT_DIR
    if not root.is_dir():
        return []
    return [
        (d.name, [(f.name, f.stat().st_size) for f in sorted(d.iterdir()) if f.is_file()])
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    ]

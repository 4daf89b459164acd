"""The merged twin as one GGUF file (llama.cpp, LM Studio, Ollama) plus an Ollama ``Modelfile``.

Written with the ``gguf`` library (llama.cpp's own Python package): tensor names come from its
``TensorNameMap`` applied to the Hugging Face names of `twin.export.hf`, metadata keys from its
writer, quantization from ``gguf.quants``. Weight matrices are stored as ``f16``, ``q8_0`` or
``f32``; norms and biases stay ``f32`` (as llama.cpp's converter does).

Supported: the Falcon-7B layout (``falcon`` in llama.cpp) with a byte-level BPE tokenizer
(``tokenizer.json``), i.e. the demo model and Falcon-7B itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from litgpt.config import Config
from litgpt.tokenizer import Tokenizer

from twin.errors import ExportError
from twin.export.hf import hf_state_dict, model_family
from twin.export.template import chat_template, default_stop_strings, ollama_template

GGUF_FILE = "twin.gguf"
MODELFILE = "Modelfile"
_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}


def gguf_tensors(config: Config, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The merged weights under llama.cpp's tensor names, in llama.cpp's layout.

    Args:
        config: the litgpt config.
        weights: merged litgpt state_dict.
    """
    if model_family(config) != "falcon":
        raise ExportError(
            f"GGUF export does not support {config.name!r} yet.",
            hint="Export with --format hf and convert that dir with llama.cpp's "
            "convert_hf_to_gguf.py.",
        )
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.FALCON, config.n_layer)
    tensors: dict[str, torch.Tensor] = {}
    for hf_name, tensor in hf_state_dict(config, weights).items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"No GGUF name for {hf_name}.", hint="Export with --format hf.")
        tensors[name] = tensor
    # llama.cpp's Falcon wants q of every head, then k, then v: litgpt's own qkv layout (the HF
    # one interleaves them per key/value group).
    for layer in range(config.n_layer):
        tensors[f"blk.{layer}.attn_qkv.weight"] = weights[f"transformer.h.{layer}.attn.qkv.weight"]
    return tensors


def _tokenizer_metadata(
    writer: gguf.GGUFWriter, base_model_dir: Path, padded_vocab_size: int
) -> None:
    path = base_model_dir / "tokenizer.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    model = data.get("model", {})
    if model.get("type") != "BPE" or not isinstance(data.get("pre_tokenizer"), dict):
        raise ExportError(
            f"GGUF export needs a byte-level BPE tokenizer.json; {base_model_dir} has none.",
            hint="Export with --format hf and convert it with llama.cpp's convert_hf_to_gguf.py.",
        )
    vocab: dict[str, int] = dict(model["vocab"])
    special = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
    vocab.update(special)
    by_id = {token_id: token for token, token_id in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for token_id in range(padded_vocab_size):
        token = by_id.get(token_id)
        if token is None:  # the embedding is padded past the tokenizer: unused rows
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(token)
            control = token in special
            types.append(gguf.TokenType.CONTROL if control else gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)


def write_gguf(
    *,
    base_model_dir: Path,
    weights: dict[str, torch.Tensor],
    out_dir: Path,
    quant: str,
    me: str,
    peer: str,
    name: str,
) -> Path:
    """Write ``twin.gguf`` and an Ollama ``Modelfile`` into ``out_dir`` (existing).

    Args:
        base_model_dir: the litgpt checkpoint dir (config and tokenizer).
        weights: merged litgpt state_dict.
        out_dir: the target dir.
        quant: ``f16``, ``q8_0`` or ``f32`` for the weight matrices.
        me: my display name (chat template, stop strings).
        peer: the other person's default name.
        name: the model's name in the file's metadata.
    """
    config = Config.from_file(base_model_dir / "model_config.yaml")
    tensors = gguf_tensors(config, weights)
    tensor_type, file_type = _TYPES[quant]
    tokenizer = Tokenizer(base_model_dir)
    path = out_dir / GGUF_FILE
    writer = gguf.GGUFWriter(path, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.FALCON])
    writer.add_name(name)
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.n_layer)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_query_groups)
    writer.add_layer_norm_eps(config.norm_eps)
    writer.add_rope_freq_base(float(config.rope_base))
    writer.add_file_type(file_type)
    _tokenizer_metadata(writer, base_model_dir, config.padded_vocab_size)
    if tokenizer.bos_id is not None:
        writer.add_bos_token_id(tokenizer.bos_id)
    if tokenizer.eos_id is not None:
        writer.add_eos_token_id(tokenizer.eos_id)
    writer.add_add_bos_token(tokenizer.use_bos)
    writer.add_chat_template(chat_template(me=me, peer=peer))
    for tensor_name, tensor in tensors.items():
        array = tensor.detach().to(torch.float32).numpy()
        # 1-D tensors (norms, biases) stay f32; Q8_0 packs rows in blocks of 32.
        kind = tensor_type if array.ndim > 1 else gguf.GGMLQuantizationType.F32
        if kind == gguf.GGMLQuantizationType.Q8_0 and array.shape[-1] % 32:
            kind = gguf.GGMLQuantizationType.F16
        if kind == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(tensor_name, array.astype(np.float16))
        elif kind == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(tensor_name, array)
        else:
            writer.add_tensor(tensor_name, gguf.quants.quantize(array, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (out_dir / MODELFILE).write_text(modelfile(me=me, peer=peer), encoding="utf-8")
    return path


def modelfile(*, me: str, peer: str) -> str:
    """An Ollama ``Modelfile`` for ``twin.gguf`` (``ollama create twin -f Modelfile``).

    Args:
        me: my display name.
        peer: the other person's name (Ollama messages carry no names).
    """
    from twin.chat.generate import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P

    # Ollama matches stop strings anywhere in the reply; the tag without its leading newline
    # is what a Modelfile string can hold.
    stops = [s.strip("\n") for s in default_stop_strings(me=me, peer=peer)]
    lines = [
        f"FROM ./{GGUF_FILE}",
        f'TEMPLATE """{ollama_template(me=me, peer=peer)}"""',
        *(f"PARAMETER stop {json.dumps(s)}" for s in stops),
        f"PARAMETER temperature {DEFAULT_TEMPERATURE}",
        f"PARAMETER top_k {DEFAULT_TOP_K}",
        f"PARAMETER top_p {DEFAULT_TOP_P}",
    ]
    return "\n".join(lines) + "\n"

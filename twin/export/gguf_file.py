"""The merged twin as one GGUF file (llama.cpp, LM Studio, Ollama) plus an Ollama ``Modelfile``.

Written with the ``gguf`` library (llama.cpp's own Python package): tensor names come from its
``TensorNameMap`` applied to the Hugging Face names of `twin.export.hf`, metadata keys from its
writer, quantization from ``gguf.quants``. Weight matrices are stored as ``f16``, ``q8_0`` or
``f32``; norms and biases stay ``f32`` (as llama.cpp's converter does). The tokenizer goes in
through `twin.export.gguf_vocab`.

Supported layouts:

* Falcon-7B (``falcon`` in llama.cpp): the demo model and Falcon-7B itself.
* Gemma 3 (``gemma3``), e.g. Gemma 3 270M, written as llama.cpp's ``convert_hf_to_gguf.py``
  writes it: every norm weight is stored with +1 added (llama.cpp's Gemma RMSNorm multiplies by
  the weight; litgpt's and transformers' by 1 + weight), exactly what
  `twin.basemodel.gguf_convert` subtracts when it reads the GGUF back. llama.cpp fixes a few
  things for Gemma 3 rather than reading them: the attention scale (1/sqrt(head size)), the
  local layers' RoPE base (10000) and their pattern (every sixth layer global). A model that
  departs from them gets the keys newer llama.cpp reads (``rope.freq_base_swa``,
  ``attention.sliding_window_pattern``), or a clear error where no key exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch
from litgpt.config import Config

from twin.errors import ExportError
from twin.export.gguf_vocab import add_tokenizer
from twin.export.hf import hf_state_dict, model_family
from twin.export.template import chat_template, default_stop_strings, ollama_template

GGUF_FILE = "twin.gguf"
MODELFILE = "Modelfile"
_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
_ARCHES = {"falcon": gguf.MODEL_ARCH.FALCON, "gemma3": gguf.MODEL_ARCH.GEMMA3}
# What llama.cpp assumes for Gemma 3 when the file does not say (src/models/gemma3.cpp).
GEMMA3_LOCAL_ROPE_BASE = 10000.0
GEMMA3_GLOBAL_EVERY = 6
GEMMA3_27B_LAYERS = 62
"""llama.cpp scales attention by 1/sqrt(n_embd / n_head) for this depth, else by head size."""


def gguf_tensors(config: Config, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The merged weights under llama.cpp's tensor names, in llama.cpp's layout.

    Args:
        config: the litgpt config.
        weights: merged litgpt state_dict.
    """
    family = model_family(config)
    names = gguf.get_tensor_name_map(_ARCHES[family], config.n_layer)
    tensors: dict[str, torch.Tensor] = {}
    for hf_name, tensor in hf_state_dict(config, weights).items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"No GGUF name for {hf_name}.", hint="Export with --format hf.")
        if family == "gemma3" and name.endswith("norm.weight"):
            tensor = tensor.to(torch.float32) + 1.0  # see the module docstring
        tensors[name] = tensor
    if family == "falcon":
        # llama.cpp's Falcon wants q of every head, then k, then v: litgpt's own qkv layout
        # (the HF one interleaves them per key/value group).
        for layer in range(config.n_layer):
            qkv = weights[f"transformer.h.{layer}.attn.qkv.weight"]
            tensors[f"blk.{layer}.attn_qkv.weight"] = qkv
    return tensors


def _gemma3_global_pattern(n_layer: int) -> list[int]:
    """llama.cpp's default Gemma 3 layer pattern: 1 for a local (sliding-window) layer."""
    return [int(i % GEMMA3_GLOBAL_EVERY < GEMMA3_GLOBAL_EVERY - 1) for i in range(n_layer)]


def _check_gemma3(config: Config) -> None:
    """Refuse what llama.cpp would compute differently from twin, naming it."""
    problems: list[str] = []
    per_head = config.n_embd // config.n_head
    expected_scale = per_head if config.n_layer == GEMMA3_27B_LAYERS else config.head_size
    if (config.attention_scores_scalar or config.head_size) != expected_scale:
        problems.append(
            f"attention scaled by 1/sqrt({config.attention_scores_scalar}) where llama.cpp "
            f"uses 1/sqrt({expected_scale})"
        )
    if config.attention_logit_softcapping is not None:
        problems.append("attention logit soft-capping (Gemma 2's, not Gemma 3's)")
    if config.rotary_percentage != 1.0:
        problems.append(f"RoPE on {config.rotary_percentage:.0%} of each head")
    if config.rope_adjustments:
        problems.append(f"RoPE scaling {config.rope_adjustments}")
    local = config.sliding_window_indices or [0] * config.n_layer
    rope_local = config.rope_indices or [0] * config.n_layer
    if config.rope_local_base_freq and list(rope_local) != list(local):
        problems.append("local RoPE on other layers than the sliding-window ones")
    if problems:
        raise ExportError(
            f"GGUF export cannot write {config.name!r} as llama.cpp's gemma3: "
            + "; ".join(problems)
            + ".",
            hint="Export with --format hf and convert it with llama.cpp's convert_hf_to_gguf.py.",
        )


def _add_model_metadata(writer: gguf.GGUFWriter, config: Config, family: str) -> None:
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.n_layer)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_query_groups)
    writer.add_rope_freq_base(float(config.rope_base))
    if family == "falcon":
        writer.add_layer_norm_eps(config.norm_eps)
        return
    _check_gemma3(config)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_key_length(config.head_size)
    writer.add_value_length(config.head_size)
    local = [int(i) for i in (config.sliding_window_indices or [0] * config.n_layer)]
    if config.sliding_window_size and any(local):
        writer.add_sliding_window(config.sliding_window_size)
        if local != _gemma3_global_pattern(config.n_layer):
            writer.add_sliding_window_pattern([bool(i) for i in local])
        local_base = float(config.rope_local_base_freq or config.rope_base)
        if local_base != GEMMA3_LOCAL_ROPE_BASE:
            writer.add_rope_freq_base_swa(local_base)
    if config.final_logit_softcapping:
        writer.add_final_logit_softcapping(config.final_logit_softcapping)


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
    family = model_family(config)
    tensors = gguf_tensors(config, weights)
    tensor_type, file_type = _TYPES[quant]
    path = out_dir / GGUF_FILE
    writer = gguf.GGUFWriter(path, arch=gguf.MODEL_ARCH_NAMES[_ARCHES[family]])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_basename("twin")
    n_params = sum(t.numel() for t in tensors.values())
    writer.add_size_label(gguf.size_label(n_params, 0, 0, 0))
    writer.add_tags(["twin", family])
    if family == "gemma3":
        writer.add_license("gemma")  # Gemma's terms apply to models derived from it
    _add_model_metadata(writer, config, family)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_tokenizer(writer, base_model_dir, config.padded_vocab_size)
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

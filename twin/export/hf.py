"""The merged twin in Hugging Face transformers layout, converted with litgpt's own code.

Layout written by `write_hf` (what ``AutoModelForCausalLM`` / vLLM / llama.cpp's converter read)::

    config.json              the architecture (FalconForCausalLM or Gemma3ForCausalLM)
    model.safetensors        weights named as transformers names them
    generation_config.json   bos/eos ids, twin's sampling defaults, stop strings that end my turn
    tokenizer.json, tokenizer_config.json (with the chat template), chat_template.jinja

Weights are renamed by litgpt's ``convert_lit_checkpoint`` copy functions (Falcon-7B layout and
Gemma 3); configs are written here from litgpt's `Config`, since litgpt only converts weights.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from litgpt.config import Config
from litgpt.scripts.convert_lit_checkpoint import copy_weights_falcon, copy_weights_gemma_3
from litgpt.tokenizer import Tokenizer
from safetensors.torch import save_file

from twin.errors import ExportError
from twin.export.template import chat_template, default_stop_strings

SUPPORTED = "Falcon (7B layout, e.g. the demo model) and Gemma 3"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
CHAT_TEMPLATE_FILE = "chat_template.jinja"
WEIGHTS_FILE = "model.safetensors"


def model_family(config: Config) -> str:
    """``"falcon"`` or ``"gemma3"``: which conversion applies to ``config``.

    Args:
        config: the litgpt config of the base model.
    """
    if "falcon" in config.name.lower() and config.parallel_residual:
        if not config.shared_attention_norm:
            raise ExportError(
                f"{config.name} uses Falcon's 40B/180B layout, which export does not support.",
                hint=f"Export supports {SUPPORTED}.",
            )
        return "falcon"
    if config.name.startswith("Gemma-3"):
        return "gemma3"
    raise ExportError(
        f"Export does not know how to convert {config.name!r}.",
        hint=f"Export supports {SUPPORTED}.",
    )


def hf_state_dict(config: Config, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """litgpt weights renamed (and the fused qkv rearranged) as transformers expects them.

    Args:
        config: the litgpt config.
        weights: a plain litgpt state_dict (merged: no LoRA keys).
    """
    state: dict[str, torch.Tensor] = {}
    if model_family(config) == "falcon":
        # litgpt picks the Falcon layout by size name; the 7B layout is the shared-norm one.
        falcon = copy.copy(config)
        falcon.name = "falcon-7b"
        copy_weights_falcon(falcon, state, weights)
    else:
        copy_weights_gemma_3(config, state, weights, untie_weights=_tied(weights))
    return state


def _tied(weights: dict[str, torch.Tensor]) -> bool:
    head = weights.get("lm_head.weight")
    return head is None or torch.equal(head, weights["transformer.wte.weight"])


def hf_config(
    config: Config, weights: dict[str, torch.Tensor], *, bos_id: int | None, eos_id: int | None
) -> dict[str, Any]:
    """``config.json`` for the litgpt ``config``.

    Args:
        config: the litgpt config.
        weights: the litgpt state_dict (to tell tied heads and the dtype).
        bos_id: beginning-of-text token id.
        eos_id: end-of-text token id.
    """
    dtype = str(weights["transformer.wte.weight"].dtype).removeprefix("torch.")
    common: dict[str, Any] = {
        "vocab_size": config.padded_vocab_size,
        "hidden_size": config.n_embd,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "max_position_embeddings": config.block_size,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "dtype": dtype,
    }
    if model_family(config) == "falcon":
        return {
            **common,
            "architectures": ["FalconForCausalLM"],
            "model_type": "falcon",
            "num_kv_heads": config.n_query_groups,
            "multi_query": config.n_query_groups == 1,
            "new_decoder_architecture": False,
            "parallel_attn": True,
            "alibi": False,
            "bias": config.bias,
            "layer_norm_epsilon": config.norm_eps,
            "ffn_hidden_size": config.intermediate_size,
            "activation": "gelu",
            "rope_theta": config.rope_base,
            "tie_word_embeddings": False,
        }
    local = config.sliding_window_indices or [0] * config.n_layer
    return {
        **common,
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "num_key_value_heads": config.n_query_groups,
        "head_dim": config.head_size,
        "intermediate_size": config.intermediate_size,
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": config.norm_eps,
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": config.rope_base},
            "sliding_attention": {
                "rope_type": "default",
                "rope_theta": config.rope_local_base_freq or config.rope_base,
            },
        },
        "query_pre_attn_scalar": config.attention_scores_scalar or config.head_size,
        "sliding_window": config.sliding_window_size,
        "layer_types": ["sliding_attention" if i else "full_attention" for i in local],
        "final_logit_softcapping": config.final_logit_softcapping,
        "attn_logit_softcapping": config.attention_logit_softcapping,
        "tie_word_embeddings": _tied(weights),
        "pad_token_id": 0,
    }


def generation_config(*, bos_id: int | None, eos_id: int | None, me: str, peer: str) -> dict:
    """``generation_config.json``: twin's sampling defaults and the strings that end my turn.

    Args:
        bos_id: beginning-of-text token id.
        eos_id: end-of-text token id.
        me: my display name (for the stop strings).
        peer: the default other person's name (for the stop strings).
    """
    from twin.chat.generate import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P

    return {
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "do_sample": True,
        "temperature": DEFAULT_TEMPERATURE,
        "top_k": DEFAULT_TOP_K,
        "top_p": DEFAULT_TOP_P,
        "stop_strings": default_stop_strings(me=me, peer=peer),
    }


def write_hf(
    *,
    base_model_dir: Path,
    weights: dict[str, torch.Tensor],
    out_dir: Path,
    me: str,
    peer: str,
) -> Path:
    """Write the Hugging Face layout of merged litgpt ``weights`` into ``out_dir`` (existing).

    Args:
        base_model_dir: the litgpt checkpoint dir (config and tokenizer files).
        weights: merged litgpt state_dict.
        out_dir: the target dir.
        me: my display name (chat template default, stop strings).
        peer: the other person's default name.
    """
    config = Config.from_file(base_model_dir / "model_config.yaml")
    tokenizer = Tokenizer(base_model_dir)
    bos_id, eos_id = tokenizer.bos_id, tokenizer.eos_id
    state = hf_state_dict(config, weights)
    # safetensors refuses views that share storage (the split qkv): give each its own.
    save_file(
        {name: t.detach().contiguous().clone() for name, t in state.items()},
        str(out_dir / WEIGHTS_FILE),
        metadata={"format": "pt"},
    )
    _write_json(out_dir / "config.json", hf_config(config, weights, bos_id=bos_id, eos_id=eos_id))
    _write_json(
        out_dir / "generation_config.json",
        generation_config(bos_id=bos_id, eos_id=eos_id, me=me, peer=peer),
    )
    for name in TOKENIZER_FILES:
        if (base_model_dir / name).is_file():
            shutil.copyfile(base_model_dir / name, out_dir / name)
    if tokenizer.use_bos and (out_dir / "tokenizer.json").is_file():
        _add_bos_on_encode(out_dir / "tokenizer.json", bos_id)
    template = chat_template(me=me, peer=peer)
    (out_dir / CHAT_TEMPLATE_FILE).write_text(template, encoding="utf-8")
    tokenizer_config = json.loads((base_model_dir / "tokenizer_config.json").read_text("utf-8"))
    tokenizer_config.pop("twin_demo", None)
    tokenizer_config["chat_template"] = template
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config)
    return out_dir


def _add_bos_on_encode(path: Path, bos_id: int | None) -> None:
    """Make ``tokenizer.json`` itself put BOS first, as litgpt does from the tokenizer config:
    transformers' fast tokenizers follow the file's post-processor, not ``add_bos_token``."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import processors

    hf_tokenizer = HFTokenizer.from_file(str(path))
    if bos_id is None or hf_tokenizer.post_processor is not None:
        return
    bos = hf_tokenizer.id_to_token(bos_id)
    hf_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
    hf_tokenizer.save(str(path))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")

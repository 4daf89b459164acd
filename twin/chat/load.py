"""Loading the twin: a base model with a run's adapter merged in, once, for many replies."""

from __future__ import annotations

from pathlib import Path

import torch
from litgpt.config import Config as BaseConfig
from litgpt.lora import GPT as LoraGPT
from litgpt.lora import Config as LoraConfig
from litgpt.lora import lora_filter, merge_lora_weights
from litgpt.model import GPT

from twin.basemodel.checkpoint import load_tokenizer, missing_files
from twin.chat.generate import MAX_CONTEXT_TOKENS, Twin
from twin.errors import ChatError
from twin.runs import adapter_path, load_run


def _load_weights(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ChatError(f"{what} is missing: {path}.", hint="Train again with `twin train`.")
    try:
        # A private (copy-on-write) mapping: merging the adapter never writes to the file.
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ChatError(
            f"{what} at {path} cannot be read ({exc}).",
            hint="The file is damaged: replace it (download the base model again, or train "
            "again with `twin train`).",
        ) from exc
    return state.get("model", state)


def load_twin(*, base_model_dir: Path | None = None, run_dir: Path | None = None) -> Twin:
    """Load a base model and, given a run, merge its adapter in; keep the result for many replies.

    Merging (W += B·A·scale) makes every token as cheap as with the base model alone. It is
    safe because this instance is never trained: the separate LoRA weights are not needed
    again, and LoRA dropout only acts in training.

    Args:
        base_model_dir: litgpt checkpoint dir of the base model; default: the run's.
        run_dir: a finished training run (see `twin.runs`); None: the base model alone.
    """
    record = load_run(run_dir) if run_dir is not None else None
    if base_model_dir is None:
        if record is None:
            raise ChatError(
                "Nothing to load: neither a run nor a base model was given.",
                hint="Pass a run dir (trained with `twin train`) or a base model dir.",
            )
        base_model_dir = record.base_model_dir
    missing = missing_files(base_model_dir)
    if missing:
        raise ChatError(
            f"The base model at {base_model_dir} is incomplete: missing {', '.join(missing)}.",
            hint="Put the base model the run was trained on back in place (`litgpt download "
            "…`), or build the offline demo with `twin model init-tiny`.",
        )
    config_file = base_model_dir / "model_config.yaml"
    tokenizer = load_tokenizer(
        base_model_dir,
        error=ChatError,
        hint="A checkpoint dir needs tokenizer.json (or tokenizer.model) and "
        "tokenizer_config.json.",
    )

    state = _load_weights(base_model_dir / "lit_model.pth", "The base model's weights")
    if run_dir is not None and record is not None:
        adapter_file = adapter_path(run_dir)
        adapter = _load_weights(adapter_file, "The run's adapter")
        if not adapter or not all(lora_filter(key, value) for key, value in adapter.items()):
            raise ChatError(
                f"{adapter_file} is not a LoRA adapter.", hint="Train again with `twin train`."
            )
        state = {**state, **adapter}
        config: BaseConfig = LoraConfig.from_file(config_file, **record.lora.litgpt_kwargs())
        model_class: type[GPT] = LoraGPT
    else:
        config = BaseConfig.from_file(config_file)
        model_class = GPT

    # Built on the meta device (no time spent on random init), then the loaded tensors are
    # adopted as they are; strict loading proves base + adapter cover every weight.
    with torch.device("meta"):
        model = model_class(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ChatError(
            f"The weights do not fit the model described in {config_file}: {exc}",
            hint="Was the run trained on a different base model? Check base_model_dir in "
            "the run's run.json, or train again with `twin train`.",
        ) from exc
    model = model.to(dtype=torch.float32)
    model.max_seq_length = min(config.block_size, MAX_CONTEXT_TOKENS)
    # The rotary tables are not weights; rebuild them on the CPU after the meta construction.
    model.cos, model.sin = model.rope_cache(device=torch.device("cpu"))
    model.requires_grad_(False)
    model.eval()
    if isinstance(model, LoraGPT):
        merge_lora_weights(model)
    name = record.run_id if record is not None else "base"
    return Twin(model=model, tokenizer=tokenizer, name=name)

"""Merged weights: base model + adapter folded into one standalone ``lit_model.pth``.

Only on request (``twin train --merge``): the adapter alone is a few MB, a merged Falcon-7B is
~14 GB. The steps are litgpt's (``litgpt merge_lora``) on twin's run layout.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from litgpt.lora import GPT, Config, lora_filter, merge_lora_weights

from twin.errors import TrainError
from twin.runs import LoraSettings, adapter_path, load_run

MERGED_FILE = "lit_model.pth"


def merge_adapter(
    *, base_model_dir: Path, adapter_file: Path, lora: LoraSettings, out_file: Path
) -> Path:
    """Fold a LoRA adapter into the base weights and save them (atomically) at ``out_file``.

    Args:
        base_model_dir: the litgpt checkpoint dir the adapter was trained on.
        adapter_file: the adapter (``lit_model.pth.lora``).
        lora: the adapter's LoRA shape.
        out_file: where the merged state_dict goes (base parameter names, no LoRA keys).
    """
    config = Config.from_file(base_model_dir / "model_config.yaml", **lora.litgpt_kwargs())
    with torch.device("meta"):
        model = GPT(config)
    weights = torch.load(base_model_dir / MERGED_FILE, mmap=True, weights_only=True)
    adapter = torch.load(adapter_file, weights_only=True)
    weights.update(adapter.get("model", adapter))
    model.load_state_dict(weights, strict=False, assign=True)
    merge_lora_weights(model)
    # LoRALinear keeps the base layer as `.linear`; the base model has no such level.
    merged = {
        key.replace("linear.", ""): value
        for key, value in model.state_dict().items()
        if not lora_filter(key, value) and value.device.type != "meta"
    }
    handle, tmp_name = tempfile.mkstemp(prefix=".merged.", dir=out_file.parent)
    tmp = Path(tmp_name)
    try:
        with open(handle, "wb") as fp:
            torch.save(merged, fp)
        tmp.replace(out_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_file


def merge_run(*, run_dir: Path) -> Path:
    """Write ``final/lit_model.pth`` for a finished run (a standalone litgpt checkpoint dir)."""
    record = load_run(run_dir)
    adapter = adapter_path(run_dir)
    if not adapter.is_file():
        raise TrainError(
            f"Run {record.run_id} has no adapter yet.",
            hint=f"Finish it first: `twin train --resume {record.run_id}`.",
        )
    return merge_adapter(
        base_model_dir=record.base_model_dir,
        adapter_file=adapter,
        lora=record.lora,
        out_file=adapter.parent / MERGED_FILE,
    )

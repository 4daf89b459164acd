"""A finished run's ``final/`` dir: the adapter and what litgpt's own tools need beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import torch
import yaml
from litgpt.lora import lora_filter

from twin.dirs import replace_dir
from twin.runs import ADAPTER_FILE, RunRecord, adapter_path
from twin.train.base_model import TOKENIZER_FILES
from twin.train.checkpoint import make_private
from twin.train.fabric import default_precision
from twin.train.merge import merge_adapter

FINAL_COPIES = (*TOKENIZER_FILES, "model_config.yaml", "tokenizer_config.json")


def save_final(
    fabric: L.Fabric, model: torch.nn.Module, *, run_dir: Path, record: RunRecord, merge: bool
) -> None:
    """Write ``final/`` whole or not at all: the adapter (a plain state_dict of the LoRA
    parameters), the base model's config and tokenizer and litgpt's ``hyperparameters.yaml``,
    so that litgpt's own tools (``litgpt merge_lora``) accept the dir too."""
    final = adapter_path(run_dir).parent
    tmp = final.with_name(".final.tmp")
    if fabric.global_rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, mode=0o700)
    fabric.barrier()
    # Fabric gathers the LoRA parameters from every shard; the result is {"model": {...}}.
    fabric.save(tmp / "gathered.pth", {"model": model}, filter={"model": lora_filter})
    fabric.barrier()
    if fabric.global_rank == 0:
        gathered = torch.load(tmp / "gathered.pth", weights_only=True)
        torch.save(gathered["model"], tmp / ADAPTER_FILE)
        (tmp / "gathered.pth").unlink()
        base = record.base_model_dir
        for name in (*FINAL_COPIES, "generation_config.json"):
            if (base / name).is_file():
                shutil.copy2(base / name, tmp / name)
        hyperparameters = {
            "checkpoint_dir": str(base),
            "precision": record.config.precision or default_precision(),
            **record.lora.litgpt_kwargs(),
        }
        (tmp / "hyperparameters.yaml").write_text(yaml.safe_dump(hyperparameters))
        if merge:
            merge_adapter(
                base_model_dir=base,
                adapter_file=tmp / ADAPTER_FILE,
                lora=record.lora,
                out_file=tmp / "lit_model.pth",
            )
        make_private(tmp)
        replace_dir(tmp, final)
    fabric.barrier()

"""Lightning Fabric for a run: precision, one device or several (FSDP on GPUs, DDP on CPU), and
QLoRA through bitsandbytes."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.fabric.strategies import DDPStrategy, FSDPStrategy
from litgpt.lora import Block

from twin.runs import TrainingConfig


def default_precision() -> str:
    """``bf16-mixed`` on a GPU that supports it, else ``32-true`` (bf16 on CPU is slower)."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def make_fabric(config: TrainingConfig) -> L.Fabric:
    """Fabric for the config, launched when it spans several processes."""
    precision: Any = config.precision or default_precision()
    plugins = None
    if config.quantize:
        # Imported only for QLoRA: it pulls in bitsandbytes, a CUDA-only dependency.
        from lightning.fabric.plugins import BitsandbytesPrecision

        dtype = {"16-true": torch.float16, "bf16-true": torch.bfloat16}.get(precision)
        dtype = dtype or torch.bfloat16
        plugins, precision = BitsandbytesPrecision(config.quantize[4:], dtype), None
    strategy: Any = "auto"
    gpu = torch.cuda.is_available()
    fsdp = config.strategy == "fsdp" or (config.strategy == "auto" and gpu)
    if config.world_size > 1 and fsdp:
        strategy = FSDPStrategy(
            auto_wrap_policy={Block}, state_dict_type="full", sharding_strategy="HYBRID_SHARD"
        )
    elif config.world_size > 1:
        strategy = DDPStrategy(process_group_backend=None if gpu else "gloo")
    fabric = L.Fabric(
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=strategy,
        precision=precision,
        plugins=plugins,
    )
    if config.world_size > 1:
        fabric.launch()
    return fabric

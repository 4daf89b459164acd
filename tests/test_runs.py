"""Runs on disk: a record written before the training config was typed still reads the same,
and ``twin train``'s options default to the training config's own defaults."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from twin.cli.train import train_command
from twin.runs import LoraSettings, TrainingConfig, load_run


def test_a_record_in_the_older_layout_reads_with_its_config_and_status(tmp_path: Path) -> None:
    older = {
        "run_id": "20240101-000000",
        "base_model_dir": "/models/base",
        "dataset_dir": "/data/dataset",
        "dataset_sha256": "0" * 64,
        "lora": {"r": 4, "alpha": 8, "mlp": True},
        "max_seq_length": 256,
        "config": {"learning_rate": 0.01, "max_steps": 7},
        "metrics": {"status": "stopped", "error": "boom", "steps": 3},
    }
    (tmp_path / "run.json").write_text(json.dumps(older))
    record = load_run(tmp_path)
    assert record.status == "stopped" and record.error == "boom"
    assert record.metrics == {"steps": 3}
    assert record.config.max_steps == 7 and record.config.learning_rate == 0.01
    assert record.lora == LoraSettings(r=4, alpha=8, mlp=True)


def test_twin_train_options_default_to_the_training_config() -> None:
    defaults = {name: p.default for name, p in inspect.signature(train_command).parameters.items()}
    config = TrainingConfig()
    renamed = {"lr": "learning_rate"}
    for option, value in defaults.items():
        field = renamed.get(option, option)
        if field in TrainingConfig.model_fields:
            assert value == getattr(config, field), option
        elif option.startswith("lora_") and option != "lora_targets":
            assert value == getattr(config.lora, option.removeprefix("lora_")), option
    targets = {t for t in defaults["lora_targets"].split(",")}
    assert targets == {name for name, on in config.lora.model_dump().items() if on is True}

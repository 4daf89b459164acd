"""Training in two processes (Fabric DDP over gloo on CPU, launched by torchrun) reaches the same
adapter as one process with the same global batch, and a stopped two-process run resumes from its
checkpoint to that same adapter.

Tolerance: every LoRA weight within 1e-5 of the one-process run (fp32; the only difference is the
order in which gradients are summed). LoRA dropout is 0: each process draws its own masks.

This file is also the script torchrun starts in each process (see ``__main__`` below).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trainhelpers import make_dataset, make_tiny_model, train_here

from twin.config import Settings
from twin.errors import TrainError
from twin.runs import LoraSettings, TrainingConfig, adapter_path, load_run

TOLERANCE = 1e-5
TWIN = str(Path(sys.executable).with_name("twin"))  # the console script
MAX_STEPS = 4
pytestmark = pytest.mark.xdist_group("multiprocess")  # two processes of their own


def config(devices: int, **kwargs: object) -> TrainingConfig:
    return TrainingConfig(
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        max_steps=MAX_STEPS,
        micro_batch_size=2,
        global_batch_size=4,
        warmup_steps=1,
        learning_rate=1e-2,
        eval_interval=MAX_STEPS,
        checkpoint_interval=2,
        devices=devices,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("multiprocess")
    dataset = make_dataset(root / "dataset", train=24, val=4)
    return dataset, make_tiny_model(root / "base", dataset_dir=dataset)


def torchrun(*command: str) -> None:
    """``command`` as a 2-process job on this machine, as a cluster launcher would start it."""
    launcher = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
        "--nproc-per-node", "2",
    ]  # fmt: skip
    command = (*launcher, *command)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(adapter_path(run_dir), weights_only=True)


def test_two_processes_train_and_resume_to_the_one_process_adapter(
    inputs: tuple[Path, Path], settings: Settings
) -> None:
    dataset, base = inputs
    single = train_here(
        settings=settings, base_model_dir=base, dataset_dir=dataset, run_id="one", config=config(1)
    )
    assert single.status == "done"
    expected = adapter(settings.data_dir / "runs" / "one")

    # Two processes, stopped after step 3 (a checkpoint at step 2 and one on stop), resumed.
    torchrun(__file__, str(settings.data_dir), str(dataset), str(base), "two", "--stop-after", "3")
    run_dir = settings.data_dir / "runs" / "two"
    stopped = load_run(run_dir)
    assert (stopped.status, stopped.metrics["steps"]) == ("stopped", 3)
    assert stopped.config.devices == 2
    # Resumed with the CLI, as README shows (`twin train` in every process).
    torchrun("--no-python", TWIN, "train", "--resume", "--run-id", "two")
    resumed = load_run(run_dir)
    assert (resumed.status, resumed.metrics["steps"]) == ("done", MAX_STEPS)
    # Both processes counted their tokens: the same data as one process saw.
    assert resumed.metrics["useful_tokens"] == single.metrics["useful_tokens"]

    got = adapter(run_dir)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=TOLERANCE, rtol=0), name
    # The adapter learned something: it is not the initial one.
    assert any(v.abs().max() > 0 for k, v in expected.items() if "lora_B" in k)


def test_fsdp_on_cpu_is_refused_with_a_hint(inputs: tuple[Path, Path], settings: Settings) -> None:
    dataset, base = inputs
    with pytest.raises(TrainError, match="Lightning Fabric runs FSDP on GPUs only") as refused:
        train_here(
            settings=settings,
            base_model_dir=base,
            dataset_dir=dataset,
            config=config(2, strategy="fsdp"),
        )
    assert "--strategy ddp" in (refused.value.hint or "")


def _main(argv: list[str]) -> None:
    data_dir, dataset, base, run_id, *flags = argv
    settings = Settings(data_dir=Path(data_dir))
    resume = "--resume" in flags
    stop_after = int(flags[flags.index("--stop-after") + 1]) if "--stop-after" in flags else None
    steps = [0]

    def should_stop() -> bool:  # polled after every step, on every rank alike
        steps[0] += 1
        return stop_after is not None and steps[0] >= stop_after

    train_here(
        settings=settings,
        base_model_dir=None if resume else Path(base),
        dataset_dir=None if resume else Path(dataset),
        run_id=run_id,
        config=None if resume else config(2),
        resume=resume,
        should_stop=should_stop,
    )


if __name__ == "__main__":
    _main(sys.argv[1:])

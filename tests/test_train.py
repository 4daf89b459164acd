"""Training: real LoRA runs of the tiny model on CPU — learning, resume after SIGKILL and
cancel, clear refusals that leave nothing behind, padding, litgpt compatibility, the CLI.

Resume tolerance: with ``32-true`` on CPU a resumed run reproduces the uninterrupted run's
adapter exactly (``torch.equal``), including LoRA dropout, thanks to the saved RNG states.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from trainhelpers import make_dataset, make_tiny_model, train_here, training_config
from typer.testing import CliRunner

from twin.config import Settings
from twin.errors import TrainError
from twin.jobs import active_job, get_job, reap_dead_jobs, request_cancel
from twin.models import JobState
from twin.runs import (
    TrainingConfig,
    adapter_path,
    latest_checkpoint,
    list_runs,
    load_run,
    runs_dir,
)
from twin.train.batching import epoch_batches, padding_fraction
from twin.train.loop import RunProgress
from twin.train.trainer import TrainingRequest, train

CONFIG = training_config(
    r=8, wide=True, warmup_steps=2, max_steps=16, eval_interval=8, checkpoint_interval=4, seed=7
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base model dir, dataset dir), shared by the module's tests."""
    root = tmp_path_factory.mktemp("train-inputs")
    dataset = make_dataset(root / "dataset")
    return make_tiny_model(root / "model", dataset_dir=dataset), dataset


@pytest.fixture(scope="module")
def reference(
    inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, torch.Tensor]]:
    """An uninterrupted run: its dir and its adapter."""
    model, dataset = inputs
    settings = Settings(data_dir=tmp_path_factory.mktemp("reference"))
    train_here(
        settings=settings, base_model_dir=model, dataset_dir=dataset, run_id="ref", config=CONFIG
    )
    run_dir = runs_dir(settings) / "ref"
    return run_dir, torch.load(adapter_path(run_dir), weights_only=True)


def _same_adapter(run_dir: Path, expected: dict[str, torch.Tensor]) -> None:
    actual = torch.load(adapter_path(run_dir), weights_only=True)
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_training_learns_the_style_and_leaves_the_run_layout(
    reference: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    run_dir, adapter = reference
    record = load_run(run_dir)
    metrics = record.metrics
    assert record.status == "done" and metrics["steps"] == 16
    assert metrics["val_loss"] < 0.5 * metrics["val_loss_start"]
    assert metrics["tokens_per_second"] > 0 and 0 <= metrics["padding_fraction"] < 0.2
    assert adapter and all("lora_" in key for key in adapter)  # LoRA parameters only
    assert not (run_dir / "final" / "lit_model.pth").exists()  # merged only on request
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged] == list(range(1, 17))
    assert sum("val_loss" in e for e in logged) == 2


def test_merged_weights_give_the_same_outputs(
    inputs: tuple[Path, Path], reference: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    from litgpt.config import Config
    from litgpt.lora import GPT as LoraGPT
    from litgpt.lora import Config as LoraConfig
    from litgpt.model import GPT

    from twin.train.merge import merge_adapter

    model_dir, _ = inputs
    run_dir, adapter = reference
    merged_file = merge_adapter(
        base_model_dir=model_dir,
        adapter_file=adapter_path(run_dir),
        lora=CONFIG.lora,
        out_file=tmp_path / "lit_model.pth",
    )
    lora_model = LoraGPT(
        LoraConfig.from_file(model_dir / "model_config.yaml", **CONFIG.lora.litgpt_kwargs())
    )
    weights = torch.load(model_dir / "lit_model.pth", weights_only=True)
    lora_model.load_state_dict({**weights, **adapter}, strict=False)
    merged = GPT(Config.from_file(model_dir / "model_config.yaml"))
    merged.load_state_dict(torch.load(merged_file, weights_only=True))
    tokens = torch.randint(0, 300, (2, 20))
    lora_model.eval(), merged.eval()
    torch.testing.assert_close(merged(tokens), lora_model(tokens), atol=1e-5, rtol=1e-5)


def _request(inputs: tuple[Path, Path], run_id: str) -> TrainingRequest:
    model, dataset = inputs
    return TrainingRequest(base_model_dir=model, dataset_dir=dataset, run_id=run_id, config=CONFIG)


def test_sigkilled_run_resumes_to_the_same_adapter(
    inputs: tuple[Path, Path], reference: tuple[Path, dict[str, torch.Tensor]], db: Settings
) -> None:
    request = _request(inputs, "killed")
    job_id = train(request, settings=db, detach=True).job_id
    run_dir = runs_dir(db) / "killed"
    deadline = time.monotonic() + 180
    while latest_checkpoint(run_dir) is None:
        assert time.monotonic() < deadline, (db.data_dir / "jobs" / f"{job_id}.log").read_text()
        time.sleep(0.02)
    pid = get_job(settings=db, job_id=job_id).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert not adapter_path(run_dir).exists(), "the run finished before it could be killed"

    [reaped] = reap_dead_jobs(settings=db, kind="train")
    assert reaped.id == job_id and reaped.state == JobState.failed
    assert [r.status for r in list_runs(db)] == ["interrupted"]

    record = train_here(settings=db, run_id="killed", resume=True)
    assert record.status == "done"
    _same_adapter(run_dir, reference[1])


def test_cancel_stops_with_a_resumable_checkpoint(
    inputs: tuple[Path, Path], reference: tuple[Path, dict[str, torch.Tensor]], db: Settings
) -> None:
    request = _request(inputs, "cancelled")

    def cancel_at_step_3(progress: RunProgress) -> None:
        if progress.step == 3:  # as `twin train --cancel` from another terminal would
            job = active_job(settings=db, kind="train")
            assert job is not None and job.id is not None
            request_cancel(settings=db, job_id=job.id)

    training = train(request, settings=db, progress=cancel_at_step_3)
    record = training.record
    assert record is not None
    assert record.status == "stopped" and record.metrics["steps"] == 3
    assert training.job_id is not None
    stopped = get_job(settings=db, job_id=training.job_id)
    assert stopped.state == JobState.cancelled
    assert json.loads(stopped.result_json or "{}")["resumable"] is True
    run_dir = runs_dir(db) / "cancelled"
    assert latest_checkpoint(run_dir) == run_dir / "checkpoints" / "step-000003"
    assert [(r.status, r.resumable) for r in list_runs(db)] == [("stopped", True)]

    train_here(settings=db, run_id="cancelled", resume=True)
    _same_adapter(run_dir, reference[1])


def _refused(settings: Settings, **kwargs: object) -> str:
    with pytest.raises(TrainError) as refused:
        train_here(settings=settings, run_id="bad", config=CONFIG, **kwargs)  # type: ignore[arg-type]
    assert not (runs_dir(settings) / "bad").exists(), "a refused run left files behind"
    return str(refused.value)


def test_bad_input_is_refused_before_anything_is_written(
    inputs: tuple[Path, Path], settings: Settings, tmp_path: Path
) -> None:
    model, dataset = inputs
    message = _refused(settings, dataset_dir=dataset)  # default base model: not downloaded
    assert "litgpt download tiiuae/falcon-7b" in message
    assert str(settings.data_dir / "checkpoints") in message and "twin model init-tiny" in message

    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "lit_model.pth").write_bytes(b"")
    message = _refused(settings, base_model_dir=incomplete, dataset_dir=dataset)
    assert "model_config.yaml" in message and "tokenizer_config.json" in message

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.json").write_text("[]")
    assert "no training samples" in _refused(settings, base_model_dir=model, dataset_dir=empty)
    assert "twin prepare" in _refused(settings, base_model_dir=model, dataset_dir=tmp_path / "no")

    foreign = make_dataset(
        tmp_path / "foreign",
        stats={"max_seq_length": 256, "tokenizer": {"dir": "/models/llama", "sha256": "0" * 64}},
    )
    message = _refused(settings, base_model_dir=model, dataset_dir=foreign)
    assert "/models/llama" in message and "twin prepare" in message

    qlora = CONFIG.model_copy(update={"quantize": "bnb.nf4"})
    with pytest.raises(TrainError, match="CUDA"):
        train_here(
            settings=settings, base_model_dir=model, dataset_dir=dataset, run_id="bad", config=qlora
        )
    assert not runs_dir(settings).exists()


def test_grouping_by_length_cuts_padding(inputs: tuple[Path, Path], settings: Settings) -> None:
    lengths = [
        int(x) for x in torch.randint(10, 400, (500,), generator=torch.Generator().manual_seed(0))
    ]
    grouped = epoch_batches(lengths, micro_batch_size=8, seed=1, epoch=0)
    plain = epoch_batches(lengths, micro_batch_size=8, seed=1, epoch=0, group_by_length=False)
    assert sorted(i for b in grouped for i in b) == list(range(500))  # every sample, once
    assert padding_fraction(lengths, grouped) < 0.5 * padding_fraction(lengths, plain)

    # The trainer reports it, and it drops with grouping on the real (bimodal) dataset too.
    model, dataset = inputs
    fractions = {}
    for group in (True, False):
        config = CONFIG.model_copy(update={"group_by_length": group, "max_steps": 4})
        record = train_here(
            settings=settings,
            base_model_dir=model,
            dataset_dir=dataset,
            run_id=f"g{group}",
            config=config,
        )
        fractions[group] = record.metrics["padding_fraction"]
    assert fractions[True] < fractions[False]


def test_dataset_files_load_with_litgpts_json_data_module(inputs: tuple[Path, Path]) -> None:
    from litgpt.data import JSON
    from litgpt.tokenizer import Tokenizer

    from twin.train.data import load_split

    model, dataset = inputs
    tokenizer = Tokenizer(model)
    data = JSON(json_path=dataset, mask_prompt=True, num_workers=0)
    data.connect(tokenizer=tokenizer, batch_size=1, max_seq_length=256)
    data.setup()
    theirs = data.train_dataset[0]
    ours, _ = load_split(dataset / "train.json", tokenizer=tokenizer, max_seq_length=256)
    assert torch.equal(theirs["input_ids"], ours[0]["input_ids"])
    assert torch.equal(theirs["labels"], ours[0]["labels"])


def test_cli_trains_and_lists_runs(inputs: tuple[Path, Path], db: Settings) -> None:
    import typer

    from twin.cli.train import register

    app = typer.Typer()
    register(app)
    model, dataset = inputs
    runner = CliRunner()
    args = [
        "train",
        "--base",
        str(model),
        "--data",
        str(dataset),
        "--run",
        "cli",
        "--max-steps",
        "2",
    ]
    result = runner.invoke(app, [*args, "--micro-batch-size", "4", "--global-batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert "run cli done" in result.output
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 0 and "cli" in result.output and "done" in result.output
    result = runner.invoke(app, ["train", "--run", "cli", "--merge"])
    assert result.exit_code == 0, result.output
    assert (runs_dir(db) / "cli" / "final" / "lit_model.pth").is_file()


@pytest.mark.parametrize("softcap", [None, 2.0], ids=["plain", "softcapped"])
def test_loss_at_reply_positions_equals_the_full_head(
    inputs: tuple[Path, Path], softcap: float | None
) -> None:
    """The head runs only where labels count, in chunks; loss and gradients are the full
    computation's (cross-entropy of the whole (B, T, V) logits, prompt positions ignored),
    also for a model that softcaps its logits (Gemma 2), where the cap belongs after the head
    only."""
    from litgpt.lora import GPT, Config, mark_only_lora_as_trainable
    from litgpt.tokenizer import Tokenizer

    import twin.train.loss as loss_module
    from twin.train.data import IGNORE_INDEX, collate, load_split

    model_dir, dataset = inputs
    samples, _ = load_split(
        dataset / "train.json", tokenizer=Tokenizer(model_dir), max_seq_length=256
    )
    input_ids, labels = collate(samples[:6])
    config = Config.from_file(
        model_dir / "model_config.yaml",
        **CONFIG.lora.litgpt_kwargs(),
        final_logit_softcapping=softcap,
    )
    torch.manual_seed(0)
    model = GPT(config)
    for name, param in model.named_parameters():  # LoRA B starts at zero: make it count
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    mark_only_lora_as_trainable(model)
    model.eval()  # no LoRA dropout: both computations see the same weights

    def loss_and_grads(compute: object) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = compute()  # type: ignore[operator]
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    def full() -> torch.Tensor:
        logits = model(input_ids)  # (B, T, V)
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)),
            labels[:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX,
        )

    expected_loss, expected_grads = loss_and_grads(full)
    chunk = loss_module.HEAD_CHUNK_POSITIONS
    try:
        loss_module.HEAD_CHUNK_POSITIONS = 7  # many chunks, the last one partial
        loss, grads = loss_and_grads(lambda: loss_module.reply_loss(model, input_ids, labels))
    finally:
        loss_module.HEAD_CHUNK_POSITIONS = chunk
    assert int((labels[:, 1:] != IGNORE_INDEX).sum()) > 7
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == expected_grads.keys() and any("lm_head" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_a_dataset_not_measured_in_the_models_tokens_is_refused_with_the_command(
    inputs: tuple[Path, Path], settings: Settings, tmp_path: Path
) -> None:
    from twin.prepare.dataset import tokenizer_fingerprint
    from twin.train.data import dataset_is_current

    model, _ = inputs
    chars = make_dataset(
        tmp_path / "chars", stats={"max_seq_length": 300, "tokenizer": None, "chars_per_token": 4}
    )
    message = _refused(settings, base_model_dir=model, dataset_dir=chars)
    assert "measured in characters" in message
    assert f"`twin prepare --base {model} --out {chars} --max-seq-length 300`" in message
    assert not dataset_is_current(dataset_dir=chars, base_model_dir=model)

    fingerprint = {"dir": str(model), "sha256": tokenizer_fingerprint(model)}
    built_for_it = make_dataset(
        tmp_path / "tokens", stats={"max_seq_length": 300, "tokenizer": fingerprint}
    )
    assert dataset_is_current(dataset_dir=built_for_it, base_model_dir=model)
    assert not dataset_is_current(dataset_dir=tmp_path / "none", base_model_dir=model)


def test_samples_too_long_are_left_out_whole_and_counted(
    inputs: tuple[Path, Path], settings: Settings
) -> None:
    """No sample is trained on with its reply cut off: too long ones are left out, and the
    run's record (shown by the CLI) says how many."""
    from litgpt.tokenizer import Tokenizer

    from twin.train.data import load_split
    from twin.train.plan import prepare_run

    model, dataset = inputs
    tokenizer = Tokenizer(model)
    whole, _ = load_split(dataset / "train.json", tokenizer=tokenizer, max_seq_length=10**6)
    budget = sorted(len(s["input_ids"]) for s in whole)[len(whole) // 2]  # the median
    config = CONFIG.model_copy(update={"max_seq_length": budget})
    request = TrainingRequest(base_model_dir=model, dataset_dir=dataset, config=config)
    plan = prepare_run(request, settings=settings)
    records = json.loads((dataset / "train.json").read_text())
    assert 0 < plan.dropped_samples < len(records)
    assert len(plan.train_samples) + plan.dropped_samples == len(records)
    for sample in plan.train_samples:
        assert len(sample["input_ids"]) <= budget and int(sample["labels"][-1]) == tokenizer.eos_id


def test_a_small_dataset_is_passed_over_until_the_run_has_enough_steps(
    tmp_path: Path, settings: Settings
) -> None:
    """Three passes over 8 samples in batches of 8 are 3 steps, too few to learn anything: the
    run goes on to ``min_steps``; ``max_steps`` still caps it; ``epochs`` alone decide on a
    dataset large enough."""
    from twin.runs import MIN_STEPS

    dataset = make_dataset(tmp_path / "dataset", train=8, val=4)
    model = make_tiny_model(tmp_path / "model", dataset_dir=dataset)
    base = {"eval_interval": 1000, "checkpoint_interval": 1000}
    cases = [({"min_steps": 10}, 10), ({"min_steps": 10, "max_steps": 6}, 6), ({"min_steps": 0}, 3)]
    for number, (changes, steps) in enumerate(cases):
        record = train_here(
            settings=settings, base_model_dir=model, dataset_dir=dataset, run_id=f"r{number}",
            config=training_config(**base, **changes),
        )  # fmt: skip
        assert record.metrics["steps"] == steps, changes
    assert TrainingConfig().min_steps == MIN_STEPS == 40


def test_a_run_recorded_before_min_steps_resumes_on_its_own_schedule(tmp_path: Path) -> None:
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    record = {
        "run_id": "old", "base_model_dir": "/m", "dataset_dir": "/d", "dataset_sha256": "x",
        "max_seq_length": 64, "config": {"epochs": 3}, "status": "stopped",
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(record))
    assert load_run(run_dir).config.min_steps == 0

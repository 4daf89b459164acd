"""Builders for training tests: a dataset in litgpt's JSON format with a learnable style, and a
tiny base model trained on its text. Import them from any test (``from trainhelpers import …``).

The style: a friend asks about a thing, and "I" always answer ``"yes <thing>, love it :)"`` —
lower case, the thing copied from the question, the same smiley. A model that learned it has a
clearly lower validation loss; one that didn't, doesn't.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from twin.prepare.files import STATS_FILE, TRAIN_FILE, VAL_FILE, PrepareStats
from twin.prepare.format import Turn, render_context, render_instruction
from twin.runs import LoraSettings, TrainingConfig
from twin.train.tiny import corpus_from_dataset, init_tiny_model

THINGS = [
    "tea",
    "coffee",
    "pizza",
    "cinema",
    "football",
    "jazz",
    "pasta",
    "chess",
    "rain",
    "snow",
    "books",
    "trains",
    "cats",
    "dogs",
    "beer",
    "wine",
    "bikes",
    "guitars",
    "sushi",
    "tacos",
    "museums",
    "hiking",
    "running",
    "yoga",
]
PEERS = ("Anna", "Boris", "Carla", "Dmitri")
QUESTIONS = (
    "do you like {}?",
    "what about {} tonight?",
    "are you into {} these days?",
    "shall we do {} on friday?",
)
OPENERS = ("hey!", "hi", "so...", "listen", "good morning")


def style_records(count: int, *, seed: int) -> list[dict[str, str]]:
    """``count`` samples in litgpt's JSON shape with the learnable reply style.

    Args:
        count: how many samples.
        seed: makes the samples reproducible.
    """
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        peer, thing = rng.choice(PEERS), rng.choice(THINGS)
        turns = [Turn(speaker=peer, text=rng.choice(OPENERS), mine=False)]
        if rng.random() < 0.5:  # vary the lengths, so that grouping by length has work to do
            turns.append(Turn(speaker="Me", text="hi " + peer.lower(), mine=True))
            turns.append(Turn(speaker=peer, text=" ".join(rng.sample(THINGS, 6)), mine=False))
        turns.append(Turn(speaker=peer, text=rng.choice(QUESTIONS).format(thing), mine=False))
        records.append(
            {
                "instruction": render_instruction(me="Me", peer=peer),
                "input": render_context(turns),
                "output": f"yes {thing}, love it :)",
                "me": "Me",
                "peer": peer,
            }
        )
    return records


def make_dataset(
    out_dir: Path,
    *,
    train: int = 96,
    val: int = 24,
    seed: int = 0,
    stats: dict[str, Any] | None = None,
) -> Path:
    """Write ``train.json`` and ``val.json`` to ``out_dir``, and ``stats.json`` when given.

    Args:
        out_dir: the dataset dir (created).
        train: training samples.
        val: validation samples.
        seed: makes the samples reproducible.
        stats: the stats fields that matter to the test (the rest: a small prepared
            dataset's); default: none, a hand-made litgpt dataset.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    records = style_records(train + val, seed=seed)
    (out_dir / TRAIN_FILE).write_text(json.dumps(records[:train], indent=1), encoding="utf-8")
    (out_dir / VAL_FILE).write_text(json.dumps(records[train:], indent=1), encoding="utf-8")
    if stats is not None:
        base = dict(
            tokenizer=None,
            max_seq_length=256,
            length_unit="tokens",
            chars_per_token=None,
            gap_seconds=86_400,
            min_messages=1,
            since=None,
            until=None,
            val_fraction=0.2,
            seed=seed,
            samples_train=train,
            samples_val=val,
        )
        content = PrepareStats.model_validate({**base, **stats}).model_dump_json()
        (out_dir / STATS_FILE).write_text(content, encoding="utf-8")
    return out_dir


def make_tiny_model(
    out_dir: Path,
    *,
    dataset_dir: Path | None = None,
    n_layer: int = 2,
    n_embd: int = 64,
    vocab_size: int = 512,
    pretrain_steps: int = 0,
    seed: int = 0,
) -> Path:
    """A test-size litgpt checkpoint dir whose tokenizer knows the style dataset's words.

    Args:
        out_dir: the checkpoint dir.
        dataset_dir: corpus source; default: freshly generated style samples.
        n_layer: transformer blocks.
        n_embd: embedding width.
        vocab_size: tokenizer vocabulary size.
        pretrain_steps: causal-LM steps before saving.
        seed: weights seed.
    """
    if dataset_dir is not None:
        corpus = list(corpus_from_dataset(dataset_dir))
    else:
        corpus = [r["input"] + "\n" + r["output"] for r in style_records(200, seed=99)]
    return init_tiny_model(
        out_dir=out_dir,
        corpus=corpus,
        vocab_size=vocab_size,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=4,
        block_size=512,
        pretrain_steps=pretrain_steps,
        seed=seed,
    )


def train_here(*, settings: Any, **request: Any) -> Any:
    """Train in this process through `twin.train.trainer.train` (a ``train`` job, as the CLI's
    foreground run) and return the run's record; keyword arguments are `TrainingRequest`
    fields (None: the default) plus ``progress`` and ``should_stop``."""
    from twin.train.trainer import TrainingRequest, train

    hooks = {key: request.pop(key) for key in ("progress", "should_stop") if key in request}
    fields = {key: value for key, value in request.items() if value is not None}
    return train(TrainingRequest(**fields), settings=settings, **hooks).record


def training_config(
    *, r: int = 4, wide: bool = False, lora_dropout: float = 0.05, **changes: Any
) -> TrainingConfig:
    """A LoRA run short enough for a test on the tiny model: rank ``r`` on query and value
    (``wide``: also the MLP and the head, which lets the tiny model learn the style in a few
    steps), a high learning rate, batches of 4 and 8; ``changes`` set any other field."""
    lora = LoraSettings(
        r=r, alpha=2 * r, dropout=lora_dropout, query=True, value=True, mlp=wide, head=wide
    )
    fields: dict[str, Any] = {
        "lora": lora,
        "learning_rate": 1e-2,
        "warmup_steps": 1,
        "micro_batch_size": 4,
        "global_batch_size": 8,
    }
    return TrainingConfig(**{**fields, **changes})


def random_lora_run(
    runs: Path,
    run_id: str,
    base_dir: Path,
    lora: LoraSettings,
    *,
    seed: int = 0,
    lora_b_std: float = 0.2,
) -> Path:
    """A finished run in the record layout whose adapter has random, non-zero LoRA weights (so
    merging matters); no training and no dataset behind it. A small ``lora_b_std`` keeps a real
    model's language, as a trained adapter does."""
    import torch
    from litgpt.lora import GPT as LoraGPT
    from litgpt.lora import Config as LoraConfig
    from litgpt.lora import lora_filter

    from twin.runs import RunRecord, adapter_path, save_run

    run_dir = runs / run_id
    adapter_path(run_dir).parent.mkdir(parents=True)
    torch.manual_seed(seed)
    model = LoraGPT(LoraConfig.from_file(base_dir / "model_config.yaml", **lora.litgpt_kwargs()))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=lora_b_std)
    adapter = {k: v for k, v in model.state_dict().items() if lora_filter(k, v)}
    torch.save(adapter, adapter_path(run_dir))
    record = RunRecord(
        run_id=run_id,
        base_model_dir=base_dir,
        dataset_dir=runs / "none",
        dataset_sha256="0" * 64,
        lora=lora,
        max_seq_length=256,
        metrics={"status": "done"},
    )
    save_run(run_dir, record)
    return run_dir


def two_step_run(root: Path, *, train: int, val: int, pretrain_steps: int = 0) -> Path:
    """A real finished run (2 LoRA steps, batches of 4) on a tiny base model and a style dataset
    of ``train``/``val`` records, all under ``root``; returns the run dir."""
    from twin.config import Settings

    dataset = make_dataset(root / "dataset", train=train, val=val)
    base = make_tiny_model(root / "base", dataset_dir=dataset, pretrain_steps=pretrain_steps)
    config = TrainingConfig(max_steps=2, micro_batch_size=4, global_batch_size=4, warmup_steps=1)
    record = train_here(
        settings=Settings(data_dir=root / "data"),
        base_model_dir=base,
        dataset_dir=dataset,
        run_id="20240102-030405",
        config=config,
    )
    return root / "data" / "runs" / record.run_id

"""The offline demo model: a complete litgpt checkpoint that litgpt itself loads, built in
about a second; base-model checks that name the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from litgpt.config import Config
from litgpt.model import GPT
from litgpt.prompts import Falcon, PromptStyle
from litgpt.tokenizer import Tokenizer
from trainhelpers import make_tiny_model, style_records
from typer.testing import CliRunner

from twin.config import Settings
from twin.errors import TrainError
from twin.train.base_model import check_base_model
from twin.train.tiny import EOS_TOKEN, corpus_from_export, init_tiny_model, is_demo_model

CORPUS = [r["input"] + "\n" + r["output"] for r in style_records(150, seed=3)]


def _lm_loss(checkpoint: Path) -> float:
    model = GPT(Config.from_file(checkpoint / "model_config.yaml"))
    model.load_state_dict(torch.load(checkpoint / "lit_model.pth", weights_only=True))
    model.eval()
    ids = Tokenizer(checkpoint).encode("\n".join(CORPUS[:20]))[:256].long().unsqueeze(0)
    with torch.no_grad():
        logits = model(ids[:, :-1])
    return torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]).item()


def test_tiny_model_is_a_complete_litgpt_checkpoint(tmp_path: Path, settings: Settings) -> None:
    checkpoint = make_tiny_model(tmp_path / "tiny")
    assert check_base_model(checkpoint, settings=settings) == checkpoint
    assert is_demo_model(checkpoint)
    tokenizer = Tokenizer(checkpoint)
    assert tokenizer.eos_id == tokenizer.token_to_id(EOS_TOKEN)
    text = "hey Anna: пицца? 🍕 yes pizza, love it :)"
    assert tokenizer.decode(tokenizer.encode(text)) == text  # byte-level: nothing is lost
    config = Config.from_file(checkpoint / "model_config.yaml")
    assert config.n_query_groups == 1 and config.parallel_residual  # Falcon's shape
    # The name must not select Falcon's chat template: training and chat use Alpaca.
    style = PromptStyle.from_config(config)
    assert not isinstance(style, Falcon)


def test_pretraining_makes_the_corpus_more_likely(tmp_path: Path) -> None:
    random_init = init_tiny_model(
        out_dir=tmp_path / "a", corpus=CORPUS, n_layer=2, n_embd=64, vocab_size=400
    )
    pretrained = init_tiny_model(
        out_dir=tmp_path / "b",
        corpus=CORPUS,
        n_layer=2,
        n_embd=64,
        vocab_size=400,
        pretrain_steps=40,
    )
    assert _lm_loss(pretrained) < 0.7 * _lm_loss(random_init)


def test_empty_corpus_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="empty"):
        init_tiny_model(out_dir=tmp_path / "tiny", corpus=["", "  "])
    assert list(tmp_path.iterdir()) == []


def test_corpus_from_export_reads_only_texts(tmp_path: Path) -> None:
    export = tmp_path / "result.json"
    export.write_text(
        json.dumps(
            {
                "chats": {
                    "list": [
                        {
                            "name": "Anna",
                            "messages": [
                                {"id": 1, "type": "message", "text": "plain"},
                                {
                                    "id": 2,
                                    "type": "message",
                                    "text": ["bold ", {"type": "bold", "text": "part"}],
                                },
                                {"id": 3, "type": "message", "text": "", "photo": "photos/1.jpg"},
                                {"id": 4, "type": "service", "action": "phone_call"},
                            ],
                        }
                    ]
                }
            }
        )
    )
    assert list(corpus_from_export(export)) == ["plain", "bold part"]


def test_missing_or_incomplete_base_model_names_the_fix(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(TrainError) as missing:
        check_base_model(settings=settings)
    text = str(missing.value)
    assert (
        f"litgpt download tiiuae/falcon-7b --checkpoint_dir {settings.data_dir / 'checkpoints'}"
        in text
    )
    assert "twin model init-tiny" in text

    checkpoint = make_tiny_model(tmp_path / "tiny")
    (checkpoint / "tokenizer.json").unlink()
    with pytest.raises(TrainError, match=r"missing tokenizer\.json or tokenizer\.model"):
        check_base_model(checkpoint, settings=settings)


def test_a_damaged_tokenizer_is_named_by_every_stage(tmp_path: Path, settings: Settings) -> None:
    from trainhelpers import make_dataset, train_here, training_config

    from twin.chat.load import load_twin
    from twin.errors import ChatError, PrepareError
    from twin.prepare.dataset import _load_budget

    dataset = make_dataset(tmp_path / "dataset", train=4, val=2)
    checkpoint = make_tiny_model(tmp_path / "tiny", dataset_dir=dataset)
    (checkpoint / "tokenizer.json").write_text('{"model": {"type": "BPE"', encoding="utf-8")
    named = rf"The tokenizer in {checkpoint} cannot be loaded"
    with pytest.raises(PrepareError, match=named):
        _load_budget(checkpoint, 256)
    with pytest.raises(TrainError, match=named):
        config = training_config(max_steps=1)
        train_here(settings=settings, base_model_dir=checkpoint, dataset_dir=dataset, config=config)
    with pytest.raises(ChatError, match=named):
        load_twin(base_model_dir=checkpoint)


def test_cli_init_tiny_builds_a_demo_model(tmp_path: Path, settings: Settings) -> None:
    from twin.cli.train import register

    export = tmp_path / "result.json"
    export.write_text(
        json.dumps({"messages": [{"id": i, "text": t} for i, t in enumerate(CORPUS)]})
    )
    app = typer.Typer()
    register(app)
    target = tmp_path / "demo"
    args = ["model", "init-tiny", str(target), "--export", str(export), "--steps", "3"]
    result = CliRunner().invoke(app, [*args, "--layers", "1", "--embd", "32", "--vocab", "300"])
    assert result.exit_code == 0, result.output
    assert is_demo_model(target) and f"twin train --base {target}" in result.output

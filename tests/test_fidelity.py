"""The fidelity report after a real (short) LoRA run of the tiny model, and ``twin eval``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from trainhelpers import make_dataset, make_tiny_model, train_here, training_config
from typer.testing import CliRunner

from twin.chat.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P, Sampling
from twin.cli.chat import register
from twin.config import Settings
from twin.errors import ChatError
from twin.evaluate.fidelity import (
    REPLIES_FILE,
    FidelityReport,
    HumanFigure,
    SideBySide,
    evaluate_run,
    format_report,
    rejudge_run,
)
from twin.evaluate.game import GameScore, save_score
from twin.evaluate.style import typical_words_of
from twin.runs import load_run, runs_dir, save_run
from twin.train.data import read_records

CONFIG = training_config(
    r=8, wide=True, lora_dropout=0.0, warmup_steps=2, max_steps=16, eval_interval=16,
    checkpoint_interval=100, seed=7,
)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """(settings, run dir) of a finished run on the style dataset."""
    root = tmp_path_factory.mktemp("fidelity")
    dataset = make_dataset(root / "dataset", train=96, val=16)
    model = make_tiny_model(root / "model", dataset_dir=dataset)
    settings = Settings(data_dir=root / "data")
    train_here(
        settings=settings, base_model_dir=model, dataset_dir=dataset, run_id="r1", config=CONFIG
    )
    return settings, runs_dir(settings) / "r1"


# Few, short generated replies: the figures are exercised, the test stays quick.
QUICK = dict(samples=2, replies=6, max_new_tokens=20, seed=3)


@pytest.fixture(scope="module")
def report(trained: tuple[Settings, Path]) -> FidelityReport:
    settings, run_dir = trained
    return evaluate_run(
        settings=settings, run_dir=run_dir, human=HumanFigure(rounds=4, fooled=1), **QUICK
    )


def test_the_twin_is_closer_to_my_replies_than_the_base(
    trained: tuple[Settings, Path], report: FidelityReport
) -> None:
    settings, run_dir = trained
    assert report.val_samples == 16 and report.scored_tokens > 16
    assert report.twin_perplexity < report.base_perplexity
    assert report.improvement > 1.5
    assert len(report.samples) == 2 and report.replies == 6
    for sample in report.samples:
        assert sample.real.startswith("yes ") and sample.context
    assert not report.dataset_changed

    stored = load_run(run_dir).fidelity
    assert stored is not None and FidelityReport.model_validate(stored) == report
    # seeded: the same call gives the same replies, figures and discriminator scores
    again = evaluate_run(settings=settings, run_dir=run_dir, **QUICK)
    assert again.samples == report.samples
    assert again.style == report.style and again.twin_vs_me == report.twin_vs_me


def test_the_report_has_style_figures_and_a_discriminator(report: FidelityReport) -> None:
    assert report.style is not None
    rows = {row.figure: row for row in report.style.rows}
    # My real replies are "yes <thing>, love it :)": lowercase, one ")" smiley, no period.
    mine = rows["lowercase replies"], rows[")-smileys per reply"], rows["final period"]
    assert [row.me for row in mine] == [1.0, 1.0, 0.0]
    assert rows["messages per reply (mean)"].me == 1.0
    assert {"love", "yes"} <= set(report.style.typical_words)
    assert rows["my typical words per reply"].me >= 3  # "yes", "love", "it" in every reply
    # The untrained base model writes gibberish: a classifier tells it from me every time.
    assert report.base_vs_me is not None and report.base_vs_me.accuracy >= 0.9
    assert report.twin_vs_me is not None and report.twin_vs_me.per_class == 6
    assert report.twin_vs_me.accuracy_low <= report.twin_vs_me.accuracy
    assert report.human is not None and report.human.fooled_rate == 0.25

    text = format_report(report)
    assert "base model" in text and "twin" in text and "sample 2" in text
    assert "lowercase replies" in text and "twin vs me: accuracy" in text
    assert "4 rounds" in text


def test_the_judged_replies_are_kept_and_judged_again_without_a_model(
    trained: tuple[Settings, Path],
) -> None:
    """Every judged reply stays with the run (owner-only), so the figures can be computed
    again without generating for minutes; my typical words come from my training replies."""
    settings, run_dir = trained
    report = evaluate_run(settings=settings, run_dir=run_dir, **QUICK)
    path = run_dir / REPLIES_FILE
    kept = [SideBySide.model_validate(r) for r in json.loads(path.read_text(encoding="utf-8"))]
    assert len(kept) == report.replies == 6 and kept[:2] == report.samples
    assert path.stat().st_mode & 0o777 == 0o600
    record = load_run(run_dir)
    assert report.style is not None
    assert report.style.typical_words == typical_words_of(
        read_records(record.dataset_dir / "train.json")
    )

    record.fidelity = None
    save_run(run_dir, record)
    with pytest.raises(ChatError, match="twin eval r1"):
        rejudge_run(run_dir)
    record.fidelity = report.model_dump(mode="json")
    save_run(run_dir, record)
    again = rejudge_run(run_dir)
    assert again == report and load_run(run_dir).fidelity == record.fidelity
    path.unlink()
    with pytest.raises(ChatError, match=r"fidelity-replies\.json is missing"):
        rejudge_run(run_dir)


def test_twin_eval_prints_and_stores_the_report(
    trained: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, run_dir = trained
    save_score(run_dir, GameScore(rounds=10, fooled=4))
    monkeypatch.setenv("TWIN_DATA_DIR", str(settings.data_dir))
    from twin.config import get_settings

    get_settings.cache_clear()
    app = typer.Typer()
    register(app)
    args = ["eval", "r1", "--samples", "1", "--max-samples", "8", "--replies", "4"]
    sampling = ["--temperature", "1", "--top-k", "0", "--top-p", "1"]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "12", *sampling])
    assert result.exit_code == 0, result.output
    assert "perplexity" in result.output and "sample 1" in result.output
    assert "Discriminator" in result.output and "10 rounds" in result.output
    assert "drawn at temperature 1, top-k all, top-p 1" in result.output
    stored = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["fidelity"]
    assert stored["val_samples"] == 8 and len(stored["samples"]) == 1
    assert stored["human"] == {"rounds": 10, "fooled": 4}
    assert stored["twin_vs_me"]["per_class"] == 4
    assert stored["sampling"] == {"temperature": 1.0, "top_k": None, "top_p": 1.0}


def test_replies_are_drawn_as_the_chat_draws_them_unless_told(
    trained: tuple[Settings, Path], report: FidelityReport
) -> None:
    settings, run_dir = trained
    assert report.sampling == Sampling()
    drawn = f"temperature {DEFAULT_TEMPERATURE:g}, top-k {DEFAULT_TOP_K}, top-p {DEFAULT_TOP_P:g}"
    assert f"drawn at {drawn}" in format_report(report)
    with pytest.raises(ChatError, match=r"top_p must be in \(0, 1\], got 1.5"):
        evaluate_run(settings=settings, run_dir=run_dir, sampling=Sampling(top_p=1.5))


def test_a_run_without_validation_split_is_refused(trained: tuple[Settings, Path]) -> None:
    settings, run_dir = trained
    record = load_run(run_dir)
    (record.dataset_dir / "val.json").rename(record.dataset_dir / "val.json.bak")
    try:
        with pytest.raises(ChatError, match="twin prepare"):
            evaluate_run(settings=settings, run_dir=run_dir)
    finally:
        (record.dataset_dir / "val.json.bak").rename(record.dataset_dir / "val.json")


def test_more_side_by_side_samples_than_replies_are_refused(
    trained: tuple[Settings, Path],
) -> None:
    settings, run_dir = trained
    with pytest.raises(ChatError, match="samples ≤ replies"):
        evaluate_run(settings=settings, run_dir=run_dir, samples=5, replies=2)

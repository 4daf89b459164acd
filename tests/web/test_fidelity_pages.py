"""The fidelity report on a run's page, and the runs compared on /fidelity."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from twin.chat.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P, Sampling
from twin.config import Settings
from twin.evaluate.fidelity import FidelityReport, HumanFigure, SideBySide, judge_replies
from twin.evaluate.game import GameScore, save_score
from twin.models import JobState
from twin.runs import load_run, save_run

from .conftest import wait_for_job

CONTEXTS = [f"Anna: do you like {thing}?" for thing in ("tea", "jazz", "chess", "snow", "cats")]
ME = [f"yes {thing}, love it :)" for thing in ("tea", "jazz", "chess", "snow", "cats")]
TWIN = ["yes tea, love it :)", "yes jazz :)", "yes, love it", "snow :)", "<b>cats</b>"]
BASE = ["I am an AI language model.", "Certainly!", "Of course.", "Yes.", "Indeed."]


def store_report(run_dir: Path) -> FidelityReport:
    style, twin_vs_me, base_vs_me = judge_replies(
        contexts=CONTEXTS, me=ME, twin=TWIN, base=BASE, seed=0
    )
    report = FidelityReport(
        run_id=run_dir.name,
        val_samples=5,
        scored_tokens=40,
        base_perplexity=80.0,
        twin_perplexity=4.0,
        samples=[SideBySide(context=CONTEXTS[4], real=ME[4], twin=TWIN[4], base=BASE[4])],
        seed=0,
        dataset_changed=False,
        seconds=1.0,
        replies=5,
        style=style,
        twin_vs_me=twin_vs_me,
        base_vs_me=base_vs_me,
        human=HumanFigure(rounds=2, fooled=1),
        sampling=Sampling(temperature=1.0, top_k=None, top_p=0.95),
    )
    record = load_run(run_dir)
    record.fidelity = report.model_dump(mode="json")
    save_run(run_dir, record)
    return report


def test_the_run_page_shows_the_report_side_by_side(owner: TestClient, finished_run: Path) -> None:
    run_id = finished_run.name
    assert "Does it sound like you?" not in owner.get(f"/runs/{run_id}").text  # not evaluated
    report = store_report(finished_run)
    save_score(finished_run, GameScore(rounds=8, fooled=3))

    page = owner.get(f"/runs/{run_id}").text
    assert page.count("Does it sound like you?") == 1
    assert "<title>Run" in page and "<section" not in page.split("</title>")[0]
    assert report.base_vs_me is not None
    assert f"{report.base_vs_me.accuracy:.2f} ({report.base_vs_me.accuracy_low:.2f}" in page
    assert "fooled in 3 of 8 rounds (38%)" in page  # the live game score
    assert "lowercase replies" in page and "yes cats, love it :)" in page
    assert "&lt;b&gt;cats&lt;/b&gt;" in page and "<b>cats</b>" not in page  # replies are text
    assert 'href="/fidelity"' in page
    assert "drawn at temperature 1.0, top-k all, top-p 0.95" in page
    assert report.style is not None
    length = report.style.rows[0]  # reply length: every reply of mine has one, so an interval
    assert length.twin_ratio_low is not None and length.twin_ratio_high is not None
    assert f"({length.twin_ratio_low:.2f}–{length.twin_ratio_high:.2f})" in page


def test_runs_are_compared_by_their_figures(owner: TestClient, finished_run: Path) -> None:
    row = owner.get("/fidelity").text
    assert f'href="/runs/{finished_run.name}"' in row and "not evaluated" in row

    report = store_report(finished_run)
    save_score(finished_run, GameScore(rounds=4, fooled=2))
    page = owner.get("/fidelity").text
    assert "not evaluated" not in page
    assert "4.00 / 80.00" in page  # perplexity twin / base
    assert report.twin_vs_me is not None and f"{report.twin_vs_me.accuracy:.2f}" in page
    assert "50% of 4" in page


def test_no_runs_yet(owner: TestClient) -> None:
    assert "No training runs yet" in owner.get("/fidelity").text


def test_the_run_page_computes_the_report_as_a_job(
    owner: TestClient, finished_run: Path, settings: Settings
) -> None:
    run_id = finished_run.name
    page = owner.get(f"/runs/{run_id}").text
    assert "Not computed yet" in page and f'action="/runs/{run_id}/fidelity"' in page
    assert f'href="/runs/{run_id}/game"' in page

    started = owner.post(f"/runs/{run_id}/fidelity")
    assert started.status_code == 303 and started.headers["location"].startswith("/jobs/")
    job_id = int(started.headers["location"].rsplit("/", 1)[1])
    assert wait_for_job(settings, job_id) == JobState.done
    job = owner.get(f"/jobs/{job_id}").text
    assert "Fidelity report" in job and f'href="/runs/{run_id}#fidelity-report"' in job

    page = owner.get(f"/runs/{run_id}").text
    assert "Not computed yet" not in page and "Perplexity of your replies" in page
    assert "Does it sound like you?" in page  # the whole report, as `twin eval` stores it
    drawn = f"temperature {DEFAULT_TEMPERATURE}, top-k {DEFAULT_TOP_K}, top-p {DEFAULT_TOP_P}"
    assert f"drawn at {drawn}" in page  # the chat's sampling
    assert load_run(finished_run).fidelity is not None
    assert "Compute it again" in page


def test_an_unfinished_run_has_no_report_button(owner: TestClient, finished_run: Path) -> None:
    record = load_run(finished_run)
    record.status = "running"
    save_run(finished_run, record)
    assert (
        f'action="/runs/{finished_run.name}/fidelity"'
        not in owner.get(f"/runs/{finished_run.name}").text
    )
    assert owner.post(f"/runs/{finished_run.name}/fidelity").status_code == 400

"""A run's page, and "Which one is me?" (`twin.evaluate.game`): a round per page, the answer
kept on the server (by browser session) until the guess."""

from __future__ import annotations

import json
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from twin.basemodel.checkpoint import is_demo_model
from twin.errors import ChatError
from twin.evaluate.game import Round, load_score, new_round, record_guess
from twin.jobs import list_jobs
from twin.prepare.files import VAL_FILE, PrepareStats, dataset_sha256, read_stats
from twin.runs import list_runs, load_run, loss_points
from twin.web import tasks
from twin.web.deps import OwnerDep, StateDep, WebState, render
from twin.web.jobview import job_redirect, job_view
from twin.web.model import load_run_twin

router = APIRouter()


def _run(state: WebState, run_id: str) -> Any:
    for run in list_runs(state.settings):
        if run.run_id == run_id:
            return run
    raise HTTPException(status_code=404, detail=f"There is no training run {run_id!r}.")


def _player(principal: OwnerDep) -> str:
    return principal.session.session_id if principal.session else "token"


def _stats_of(record: Any) -> PrepareStats | None:
    """The sample counts of the dataset the run trained on (None once it was rebuilt)."""
    if dataset_sha256(record.dataset_dir) != record.dataset_sha256:
        return None
    return read_stats(record.dataset_dir)


def _fidelity_job(state: WebState, run_id: str) -> dict[str, Any] | None:
    """The newest fidelity job of this run, as the job partial shows it."""
    for job in list_jobs(settings=state.settings, kind=tasks.FIDELITY_JOB, limit=20):
        if json.loads(job.params_json or "{}").get("run_id") == run_id:
            return job_view(job, state.live_progress, state.settings)
    return None


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, state: StateDep) -> Response:
    run = _run(state, run_id)
    record = load_run(run.run_dir)
    context = {
        "run": run,
        "fidelity": record.fidelity,
        "fidelity_job": _fidelity_job(state, run_id),
        "score": load_score(run.run_dir),
        "demo": is_demo_model(record.base_model_dir),
        "curve": json.dumps(loss_points(run.run_dir)),
        "has_val": (record.dataset_dir / VAL_FILE).is_file(),
        "stats": _stats_of(record),
    }
    return render(request, "run.html", context)


@router.post("/runs/{run_id}/fidelity")
def compute_fidelity(run_id: str, state: StateDep) -> Response:
    """Compute the run's fidelity report as a job (what ``twin eval`` does)."""
    run = _run(state, run_id)
    if run.status != "done":
        raise ChatError(f"The run {run_id} has not finished.", hint="Let it finish first.")
    return job_redirect(lambda: tasks.start_fidelity(state, run_dir=run.run_dir))


@router.get("/runs/{run_id}/game")
def game_page(request: Request, run_id: str, state: StateDep, principal: OwnerDep) -> Response:
    run = _run(state, run_id)
    if run.status != "done":
        raise ChatError(f"The run {run_id} has not finished.", hint="Let it finish first.")
    current = new_round(
        run_id=run_id,
        val_path=load_run(run.run_dir).dataset_dir / VAL_FILE,
        twin=load_run_twin(state, run.run_dir.resolve()),
        seed=secrets.randbelow(2**31),
    )
    state.game_rounds[_player(principal)] = current
    context = {"run": run, "round": current, "score": load_score(run.run_dir)}
    return render(request, "game.html", context)


@router.post("/runs/{run_id}/game")
def game_guess(
    request: Request,
    run_id: str,
    state: StateDep,
    principal: OwnerDep,
    choice: Annotated[int, Form(ge=0, le=1)],
) -> Response:
    """Record a guess: ``choice`` is the index of the reply the player thinks is mine."""
    run = _run(state, run_id)
    current: Round | None = state.game_rounds.get(_player(principal))
    if current is None or current.run_id != run_id:
        return RedirectResponse(f"/runs/{run_id}/game", status_code=303)
    del state.game_rounds[_player(principal)]  # one guess per round
    score = record_guess(run.run_dir, current, choice=choice, now_unix=int(time.time()))
    fooled = choice != current.real_index
    context = {"run": run, "round": current, "score": score, "choice": choice, "fooled": fooled}
    return render(request, "game.html", context)

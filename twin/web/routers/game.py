"""A run's page, and "Which one is me?": a blind test of the twin by people, not by perplexity.

A round shows a moment from the run's validation split (conversations held out of training)
and two replies in random order: what I really wrote and what the twin writes to the same
context (seeded, through the same `stream_reply` as the chat). The player picks the real one.
Which is which stays on the server until the guess; the score (rounds, times fooled) is kept
with the run in ``game.json`` and shown on the run's page next to the perplexity report.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from twin.errors import ChatError, TrainError
from twin.prepare.files import VAL_FILE, PrepareStats, dataset_sha256, read_stats
from twin.prepare.format import record_speakers
from twin.web.deps import OwnerDep, StateDep, WebState, render
from twin.web.routers.chat import load_run_twin

router = APIRouter()

GAME_FILE = "game.json"
# The twin's reply is sampled as in the fidelity report: a little randomness, a fixed seed.
GAME_TEMPERATURE = 0.7
GAME_TOP_K = 50
GAME_MAX_NEW_TOKENS = 64


class GameScore(BaseModel):
    """How often people took the twin for me (``game.json`` in the run's dir)."""

    rounds: int = 0
    fooled: int = 0
    """Rounds in which the twin's reply was picked as the real one."""
    updated_unix: int = 0

    def after_guess(self, *, fooled: bool, now_unix: int) -> GameScore:
        """The score with one more round.

        Args:
            fooled: the player picked the twin's reply.
            now_unix: the time of the guess.
        """
        return GameScore(
            rounds=self.rounds + 1, fooled=self.fooled + int(fooled), updated_unix=now_unix
        )

    @property
    def fooled_fraction(self) -> float | None:
        """Share of rounds the twin won (0.5 means people cannot tell us apart)."""
        return self.fooled / self.rounds if self.rounds else None


class Round(BaseModel):
    """One round: the context and the two replies in the order shown."""

    run_id: str
    context: str
    replies: tuple[str, str]
    real_index: int
    """Which of ``replies`` I wrote (kept on the server)."""


def load_score(run_dir: Path) -> GameScore:
    """The run's game score (zero when nobody played yet).

    Args:
        run_dir: the run's directory.
    """
    path = run_dir / GAME_FILE
    try:
        return GameScore.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return GameScore()


def save_score(run_dir: Path, score: GameScore) -> None:
    """Write ``game.json`` atomically.

    Args:
        run_dir: the run's directory.
        score: the score.
    """
    path = run_dir / GAME_FILE
    tmp = path.with_name(f".{GAME_FILE}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(score.model_dump_json())
    tmp.replace(path)


def arrange_round(*, run_id: str, context: str, real: str, twin: str, rng: random.Random) -> Round:
    """Put the two replies in random order.

    Args:
        run_id: the run being tested.
        context: the conversation so far (a sample's ``input``).
        real: my real reply.
        twin: the twin's reply.
        rng: decides the order.
    """
    real_index = rng.randrange(2)
    replies = (real, twin) if real_index == 0 else (twin, real)
    return Round(run_id=run_id, context=context, replies=replies, real_index=real_index)


def _run(state: WebState, run_id: str) -> Any:
    from twin.train.runs import list_runs

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


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, state: StateDep) -> Response:
    from twin.train.record import load_run
    from twin.train.tiny import is_demo_model
    from twin.web.routers.train import loss_points

    run = _run(state, run_id)
    record = load_run(run.run_dir)
    context = {
        "run": run,
        "fidelity": record.fidelity,
        "score": load_score(run.run_dir),
        "demo": is_demo_model(record.base_model_dir),
        "curve": json.dumps(loss_points(run.run_dir)),
        "has_val": (record.dataset_dir / VAL_FILE).is_file(),
        "stats": _stats_of(record),
    }
    return render(request, "run.html", context)


def new_round(state: WebState, run: Any, *, seed: int) -> Round:
    """Pick a held-out sample and write the twin's reply to it.

    Args:
        state: the app's state (the loaded model).
        run: the run's summary.
        seed: picks the sample and seeds the twin's reply.
    """
    from twin.train.data import read_records
    from twin.train.record import load_run

    if run.status != "done":
        raise ChatError(f"The run {run.run_id} has not finished.", hint="Let it finish first.")
    record = load_run(run.run_dir)
    try:
        samples = read_records(record.dataset_dir / VAL_FILE)
    except TrainError as exc:
        raise ChatError(exc.message, hint=exc.hint) from exc
    samples = [s for s in samples if s.get("output", "").strip()]
    if not samples:
        raise ChatError(
            "The run's validation split is empty: there is nothing to play with.",
            hint="Rebuild the dataset with some validation samples and train again.",
        )
    rng = random.Random(seed)
    sample = rng.choice(samples)
    me, peer = record_speakers(sample)
    twin = load_run_twin(state, run.run_dir.resolve())
    pieces = twin.stream_reply(
        context=sample["input"],
        me=me,
        peer=peer,
        temperature=GAME_TEMPERATURE,
        top_k=GAME_TOP_K,
        max_new_tokens=GAME_MAX_NEW_TOKENS,
        seed=seed,
    )
    reply = "".join(pieces).strip()
    return arrange_round(
        run_id=run.run_id,
        context=sample["input"],
        real=sample["output"].strip(),
        twin=reply,
        rng=rng,
    )


@router.get("/runs/{run_id}/game")
def game_page(request: Request, run_id: str, state: StateDep, principal: OwnerDep) -> Response:
    run = _run(state, run_id)
    current = new_round(state, run, seed=secrets.randbelow(2**31))
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
    fooled = choice != current.real_index
    score = load_score(run.run_dir).after_guess(fooled=fooled, now_unix=int(time.time()))
    save_score(run.run_dir, score)
    context = {"run": run, "round": current, "score": score, "choice": choice, "fooled": fooled}
    return render(request, "game.html", context)

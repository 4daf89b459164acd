""" "Which one is me?": a blind test of the twin by people, not by perplexity.

A round shows a moment from the run's validation split (conversations held out of training)
and two replies in random order: what I really wrote and what the twin writes to the same
context (seeded, through the same `stream_reply` as the chat). The player picks the real one.
Which is which stays with the caller (the web app keeps it on the server) until the guess; the
score (rounds, times fooled) is kept with the run in ``game.json``, shown on the run's page and
stored with the fidelity report (`human_figure`).
"""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import BaseModel

from twin.chat.defaults import Sampling
from twin.errors import ChatError, TrainError
from twin.evaluate.replies import Replier, reply_to_sample
from twin.evaluate.report import HumanFigure
from twin.files import write_private

GAME_FILE = "game.json"
GAME_SAMPLING = Sampling()
"""The twin's reply is sampled as in the chat and the fidelity report (with a fixed seed): the
game judges the twin people talk to."""
GAME_MAX_NEW_TOKENS = 64
MAX_DRAWS = 8
"""Held-out moments tried for one round before giving up: a round whose two replies are the
same is no question, so it is skipped."""


class GameScore(HumanFigure):
    """How often people took the twin for me (``game.json`` in the run's dir; 0.5 of rounds
    fooled means people cannot tell us apart)."""

    rounds: int = 0
    fooled: int = 0
    updated_unix: int = 0

    def after_guess(self, *, fooled: bool, now_unix: int) -> GameScore:
        """The score with one more round (``fooled``: the player took the twin's reply for
        mine)."""
        return GameScore(
            rounds=self.rounds + 1, fooled=self.fooled + int(fooled), updated_unix=now_unix
        )


class Round(BaseModel):
    """One round: the context and the two replies in the order shown."""

    run_id: str
    context: str
    replies: tuple[str, str]
    real_index: int
    """Which of ``replies`` I wrote (never shown before the guess)."""


def load_score(run_dir: Path) -> GameScore:
    """The run's game score (zero when nobody played yet)."""
    try:
        return GameScore.model_validate_json((run_dir / GAME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return GameScore()


def save_score(run_dir: Path, score: GameScore) -> None:
    """Write ``game.json`` atomically (owner-only: it says how the owner's chats read)."""
    path = run_dir / GAME_FILE
    write_private(path, score.model_dump_json())


def human_figure(run_dir: Path) -> HumanFigure | None:
    """The score as the fidelity report stores it (None before the first round)."""
    score = load_score(run_dir)
    return HumanFigure(rounds=score.rounds, fooled=score.fooled) if score.rounds else None


def record_guess(run_dir: Path, current: Round, *, choice: int, now_unix: int) -> GameScore:
    """Score one guess (``choice``: the index of the reply the player took for mine) and keep
    the new score with the run."""
    fooled = choice != current.real_index
    score = load_score(run_dir).after_guess(fooled=fooled, now_unix=now_unix)
    save_score(run_dir, score)
    return score


def arrange_round(*, run_id: str, context: str, real: str, twin: str, rng: random.Random) -> Round:
    """Put my real reply and the twin's in an order ``rng`` decides (``context``: a sample's
    ``input``)."""
    real_index = rng.randrange(2)
    replies = (real, twin) if real_index == 0 else (twin, real)
    return Round(run_id=run_id, context=context, replies=replies, real_index=real_index)


def same_reply(a: str, b: str) -> bool:
    """True when two replies read the same (blanks aside): nothing to tell apart."""
    return a.split() == b.split()


def new_round(*, run_id: str, val_path: Path, twin: Replier, seed: int) -> Round:
    """A round from a held-out sample, skipping samples the twin answers word for word as I did.

    ``seed`` picks the samples and the order, and seeds the twin's replies.
    """
    from twin.train.data import read_records  # loads torch: only once a twin plays

    try:
        samples = read_records(val_path)
    except TrainError as exc:
        raise ChatError(exc.message, hint=exc.hint) from exc
    samples = [s for s in samples if s.get("output", "").strip()]
    if not samples:
        raise ChatError(
            "The run's validation split is empty: there is nothing to play with.",
            hint="Rebuild the dataset with some validation samples and train again.",
        )
    rng = random.Random(seed)
    for sample in rng.sample(samples, min(MAX_DRAWS, len(samples))):
        reply = reply_to_sample(
            twin,
            sample,
            sampling=GAME_SAMPLING,
            max_new_tokens=GAME_MAX_NEW_TOKENS,
            seed=seed,
        )
        real = sample["output"].strip()
        if not same_reply(real, reply):
            return arrange_round(
                run_id=run_id, context=sample["input"], real=real, twin=reply, rng=rng
            )
    raise ChatError(
        f"The twin wrote exactly your reply in all {min(MAX_DRAWS, len(samples))} held-out "
        "moments tried: there is no round to play.",
        hint="Play again for other moments; a twin that repeats you word for word may have "
        "seen these chats in training (rebuild the dataset and train again).",
    )

""" "Which one is me?": blind rounds on a real run's held-out samples, the score kept per run."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from twin.errors import ChatError
from twin.evaluate.game import arrange_round, new_round
from twin.prepare.format import render_instruction


def play(owner: TestClient, run_id: str, *, pick_real: bool) -> str:
    page = owner.get(f"/runs/{run_id}/game")
    assert page.status_code == 200
    assert page.text.count(f'action="/runs/{run_id}/game"') == 2
    assert re.search(r'<pre class="context">.+</pre>', page.text, re.S), "no chat context"
    current = next(iter(owner.app.state.twin.game_rounds.values()))  # type: ignore[attr-defined]
    assert current.replies[current.real_index] in page.text.replace("&#39;", "'")
    choice = current.real_index if pick_real else 1 - current.real_index
    return owner.post(f"/runs/{run_id}/game", data={"choice": str(choice)}).text


def test_rounds_are_scored_and_kept_with_the_run(owner: TestClient, finished_run: Path) -> None:
    run_id = finished_run.name
    page = owner.get(f"/runs/{run_id}").text
    assert "Nobody has played yet" in page and f'href="/runs/{run_id}/game"' in page

    assert "Right." in play(owner, run_id, pick_real=True)
    result = play(owner, run_id, pick_real=False)
    assert "Fooled!" in result and "The twin wrote this · your pick" in result
    score = json.loads((finished_run / "game.json").read_text())
    assert (score["rounds"], score["fooled"]) == (2, 1)
    assert (
        "<strong>1</strong> of <strong>2</strong> rounds fooled (50%"
        in owner.get(f"/runs/{run_id}").text
    )

    # A guess without a pending round (a replayed form) counts nothing.
    replay = owner.post(f"/runs/{run_id}/game", data={"choice": "0"})
    assert replay.status_code == 303
    assert json.loads((finished_run / "game.json").read_text())["rounds"] == 2
    assert owner.get("/runs/19990101-000000/game").status_code == 404


def test_the_real_reply_takes_either_place() -> None:
    rng = random.Random(0)
    places = {
        arrange_round(run_id="r", context="c", real="mine", twin="its", rng=rng).real_index
        for _ in range(20)
    }
    assert places == {0, 1}


class EchoTwin:
    """Answers each context with the reply it is given for it (the real one, or another)."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies

    def stream_reply(self, *, context: object, **_: object) -> Iterator[str]:
        yield self.replies[str(context)]


def _val_split(tmp_path: Path, outputs: dict[str, str]) -> Path:
    instruction = render_instruction(me="Me", peer="Anna")
    records = [
        {"instruction": instruction, "me": "Me", "peer": "Anna", "input": c, "output": o}
        for c, o in outputs.items()
    ]
    path = tmp_path / "val.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_rounds_whose_two_replies_are_the_same_are_skipped(tmp_path: Path) -> None:
    real = {f"Anna: q{i}": f"answer {i}" for i in range(6)}
    val = _val_split(tmp_path, real)
    # The twin repeats me word for word everywhere but in one moment (blanks aside).
    twin = EchoTwin(
        {c: f" {o}  " if c != "Anna: q4" else "something else" for c, o in real.items()}
    )
    for seed in range(10):
        current = new_round(run_id="r", val_path=val, twin=twin, seed=seed)
        assert current.context == "Anna: q4"
        assert set(current.replies) == {"answer 4", "something else"}

    with pytest.raises(ChatError, match="wrote exactly your reply"):
        new_round(run_id="r", val_path=val, twin=EchoTwin(real), seed=0)

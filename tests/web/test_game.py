""" "Which one is me?": blind rounds on a real run's held-out samples, the score kept per run."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from fastapi.testclient import TestClient

from twin.web.routers.game import arrange_round


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

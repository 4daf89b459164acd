"""SIGKILL at seeded random moments during import, harvest, prepare and training.

Each stage runs in a forked child of the fork server (see ``conftest.py``) and is killed after a
delay drawn from [0, the duration of an uninterrupted run). After every kill the database passes
``PRAGMA integrity_check`` and holds a state a user could have seen; then the stage runs again
(killed again, maybe) until it completes, and the result must equal an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    API_HASH,
    API_ID,
    Forker,
    child_settings,
    connect,
    copy_data_dir,
    forker_fixture,
    integrity,
    make_export,
    message_rows,
    write_export,
)
from conftest import (
    db_file as db_path,
)

from twin.db import upgrade_database

pytestmark = pytest.mark.faults

KILLS_PER_STAGE = 20
SEED = 20240601


@pytest.fixture(scope="module")
def forker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forker]:
    preload = ["torch", "litgpt.lora", "telethon", "tgserver", "twin.importer", "test_kill"]
    yield from forker_fixture(preload, tmp_path_factory.mktemp("forks"))


def _migrated(data_dir: Path) -> Path:
    upgrade_database(child_settings(data_dir))
    from twin.db import _cached_engine

    _cached_engine.cache_clear()  # the children open their own connections
    return data_dir


def _timed(forker: Forker, target: str, **kwargs: Any) -> float:
    started = time.monotonic()
    status = forker.run(target, **kwargs)
    assert status["code"] == 0, status["log"]
    return time.monotonic() - started


def _kill_until_done(
    forker: Forker, rng: random.Random, target: str, duration: float, check: Any, **kwargs: Any
) -> int:
    """Run ``target`` with a random kill each time until one run completes; return the kills.

    ``check`` is called after every kill (the invariants that must hold at any moment).
    """
    kills = 0
    while True:
        status = forker.kill_after(target, rng.uniform(0, duration), **kwargs)
        if status["signal"] is None:
            assert status["code"] == 0, status["log"]
            return kills
        kills += 1
        check()


# -- children ------------------------------------------------------------------------------


def child_import(data_dir: str, path: str) -> int:
    from twin.importer import import_export

    return import_export(settings=child_settings(data_dir), path=Path(path)).messages_new


def child_harvest(data_dir: str, seed: int) -> int:
    from tgserver import TelegramServer, build_world

    settings = child_settings(data_dir, api_id=API_ID, api_hash=API_HASH)
    server = TelegramServer(build_world(seed=seed, people=4, messages_per_person=150))

    return server.log_in(settings).harvest(settings).messages_new


def child_prepare(data_dir: str, out_dir: str, seed: int) -> int:
    from twin.prepare.dataset import prepare_dataset

    stats = prepare_dataset(
        settings=child_settings(data_dir), out_dir=Path(out_dir), min_messages=1, seed=seed
    )
    return stats.samples_train


def child_train(data_dir: str, model_dir: str, dataset_dir: str, run_id: str) -> str:
    from trainhelpers import train_here

    from twin.runs import load_run, runs_dir

    settings = child_settings(data_dir)
    run_dir = runs_dir(settings) / run_id
    resume = (run_dir / "run.json").is_file()
    if resume and load_run(run_dir).status == "done":
        return "done"  # killed after the run finished, before the process ended
    record = train_here(
        settings=settings,
        base_model_dir=Path(model_dir),
        dataset_dir=Path(dataset_dir),
        run_id=run_id,
        config=None if resume else _train_config(),
        resume=resume,
    )
    return str(record.status)


def _train_config() -> Any:
    from trainhelpers import training_config

    return training_config(
        max_steps=12, eval_interval=6, eval_max_batches=2, checkpoint_interval=2, seed=3
    )


# -- tests ---------------------------------------------------------------------------------


def test_killed_import_leaves_the_old_state_or_the_new_one(forker: Forker, tmp_path: Path) -> None:
    first = write_export(tmp_path / "a.json", make_export(chats=3, messages=300, seed=1))
    # The second export overlaps the first (ids 201…) and brings edits and new messages.
    second = write_export(
        tmp_path / "b.json", make_export(chats=4, messages=1500, seed=2, first_id=201)
    )
    reference = _migrated(tmp_path / "reference")
    for path in (first, second):
        forker.run("test_kill:child_import", data_dir=str(reference), path=str(path))
    expected = message_rows(db_path(reference))

    start = _migrated(tmp_path / "start")
    assert forker.run("test_kill:child_import", data_dir=str(start), path=str(first))["code"] == 0
    before = message_rows(db_path(start))
    duration = _timed(forker, "test_kill:child_import", data_dir=str(reference), path=str(second))

    rng = random.Random(SEED)
    kills, trials = 0, 0
    while kills < KILLS_PER_STAGE:
        data_dir = tmp_path / f"trial{trials}"
        copy_data_dir(start, data_dir)
        trials += 1

        def check(data_dir: Path = data_dir) -> None:
            assert integrity(db_path(data_dir)) == "ok"
            # All or nothing (a kill after the commit, before the exit, finds it all done).
            assert message_rows(db_path(data_dir)) in (before, expected)

        kills += _kill_until_done(
            forker,
            rng,
            "test_kill:child_import",
            duration,
            check,
            data_dir=str(data_dir),
            path=str(second),
        )
        assert message_rows(db_path(data_dir)) == expected
        shutil.rmtree(data_dir)
    print(f"kill import: {kills} kills in {trials} imports of {len(expected)} messages, lost 0")


def test_killed_harvest_loses_and_duplicates_nothing(forker: Forker, tmp_path: Path) -> None:

    reference = _migrated(tmp_path / "reference")
    duration = _timed(forker, "test_kill:child_harvest", data_dir=str(reference), seed=SEED)
    expected = message_rows(db_path(reference))
    assert len(expected) > 500
    by_key = {(row[0], row[1]): row for row in expected}

    rng = random.Random(SEED)
    data_dir = _migrated(tmp_path / "killed")
    kills, chains = 0, 0
    while kills < KILLS_PER_STAGE:

        def check(data_dir: Path = data_dir) -> None:
            path = db_path(data_dir)
            assert integrity(path) == "ok"
            rows = message_rows(path)
            keys = [(r[0], r[1]) for r in rows]
            assert len(keys) == len(set(keys)), "a message was stored twice"
            assert all(by_key[(r[0], r[1])] == r for r in rows), "a row differs from Telegram's"
            with connect(path) as connection:
                states = connection.execute(
                    "SELECT d.peer_id, h.last_id FROM harveststate h JOIN dialog d "
                    "ON d.id = h.dialog_id"
                ).fetchall()
            stored = set(keys)
            for peer, last_id in states:
                claimed = {k for k in by_key if k[0] == peer and k[1] <= last_id}
                assert claimed <= stored, "the progress claims messages that are not stored"

        kills += _kill_until_done(
            forker,
            rng,
            "test_kill:child_harvest",
            duration,
            check,
            data_dir=str(data_dir),
            seed=SEED,
        )
        assert message_rows(db_path(data_dir)) == expected
        # The next chain starts from scratch again, so kills land at every stage of a run.
        shutil.rmtree(data_dir)
        data_dir = _migrated(tmp_path / f"killed{kills}")
        chains += 1
    print(f"kill harvest: {kills} kills in {chains} harvests of {len(expected)} messages, lost 0")


def _dataset_digest(out_dir: Path) -> dict[str, str]:
    files = {}
    for path in sorted(out_dir.iterdir()):
        data = path.read_bytes()
        json.loads(data)  # never partial JSON
        files[path.name] = hashlib.sha256(data).hexdigest()
    return files


def test_killed_prepare_leaves_the_old_or_the_new_dataset(forker: Forker, tmp_path: Path) -> None:
    data_dir = _migrated(tmp_path / "data")
    export = write_export(tmp_path / "a.json", make_export(chats=4, messages=1200, seed=5))
    assert (
        forker.run("test_kill:child_import", data_dir=str(data_dir), path=str(export))["code"] == 0
    )
    out_dir = data_dir / "dataset"
    digests = {}
    for seed in (1, 2):  # two seeds split differently: two distinguishable complete datasets
        duration = _timed(
            forker,
            "test_kill:child_prepare",
            data_dir=str(data_dir),
            out_dir=str(out_dir),
            seed=seed,
        )
        digests[seed] = _dataset_digest(out_dir)
    assert digests[1] != digests[2]

    rng = random.Random(SEED)
    runs = 0
    kills, seed = 0, 1  # the dataset on disk is seed 2's; the next run writes seed 1's
    while kills < KILLS_PER_STAGE:
        old = seed % 2 + 1

        def check(old: int = old, new: int = seed) -> None:
            assert _dataset_digest(out_dir) in (digests[old], digests[new])

        kills += _kill_until_done(
            forker,
            rng,
            "test_kill:child_prepare",
            duration,
            check,
            data_dir=str(data_dir),
            out_dir=str(out_dir),
            seed=seed,
        )
        assert _dataset_digest(out_dir) == digests[seed]
        seed = seed % 2 + 1
        runs += 1
    assert integrity(db_path(data_dir)) == "ok"
    print(f"kill prepare: {kills} kills in {runs} dataset builds, mixed or partial sets 0")


def test_killed_training_resumes_to_the_same_adapter(forker: Forker, tmp_path: Path) -> None:
    import torch
    from trainhelpers import make_dataset, make_tiny_model

    from twin.runs import STATE_FILE, adapter_path, list_checkpoints

    dataset = make_dataset(tmp_path / "dataset", train=48, val=8)
    model = make_tiny_model(tmp_path / "model", dataset_dir=dataset)
    common = {"model_dir": str(model), "dataset_dir": str(dataset)}
    reference = tmp_path / "reference"
    duration = _timed(
        forker, "test_kill:child_train", data_dir=str(reference), run_id="ref", **common
    )
    expected = torch.load(adapter_path(reference / "runs" / "ref"), weights_only=True)

    rng = random.Random(SEED)
    kills, chains = 0, 0
    while kills < KILLS_PER_STAGE:
        data_dir = tmp_path / f"chain{chains}"
        run_dir = data_dir / "runs" / "run"
        chains += 1

        def check(run_dir: Path = run_dir) -> None:
            assert not (run_dir / "final").exists() or adapter_path(run_dir).is_file()
            for checkpoint in list_checkpoints(run_dir):  # every visible one loads whole
                state = torch.load(checkpoint / STATE_FILE, weights_only=False)
                assert state["step"] == int(checkpoint.name.removeprefix("step-"))

        kills += _kill_until_done(
            forker, rng, "test_kill:child_train", duration, check, data_dir=str(data_dir),
            run_id="run", **common,
        )  # fmt: skip
        actual = torch.load(adapter_path(run_dir), weights_only=True)
        assert actual.keys() == expected.keys()
        assert all(torch.equal(actual[k], expected[k]) for k in expected)
    print(f"kill train: {kills} kills in {chains} runs, each resumed to the reference adapter")

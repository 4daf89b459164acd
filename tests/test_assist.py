"""Assist: the twin writes reply drafts in switched-on chats, through Telethon's real client with
updates on, against the in-memory Telegram server (tests/tgserver_updates.py), with a real
(tiny) trained model."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlmodel import func, select
from telethon.tl import types
from tgserver import build_world
from tgserver_updates import UpdatesServer

from twin import jobs
from twin.assist.drafts import JOB_KIND, AssistOptions, assist, set_assist
from twin.assist.job import job_to_resume, run_assist_job, start_assist_job
from twin.assist.rules import digest, draft_reason, first_clean_reply, quiet_reason
from twin.chat.generate import Twin
from twin.chat.load import load_twin
from twin.config import Settings
from twin.db import session_scope
from twin.errors import RunError, TelegramError, TwinError
from twin.models import Dialog, JobState, Message
from twin.prepare.sessions import ChatMessage

ANNA, BORIS = 2001, 2002
FAST = {"min_interval_seconds": 0, "poll_seconds": 0.02, "seed": 1, "max_new_tokens": 24}


@pytest.fixture(scope="module")
def twin_model(tmp_path_factory: pytest.TempPathFactory) -> Twin:
    """A tiny model with a 2-step LoRA run, loaded once for the module."""
    from trainhelpers import two_step_run

    root = tmp_path_factory.mktemp("assist-run")
    return load_twin(run_dir=two_step_run(root, train=16, val=4, pretrain_steps=30))


@pytest.fixture
def db(tg: Settings) -> Settings:
    """Every test here talks to Telegram: the database comes with API credentials."""
    return tg


@pytest.fixture
def server(db: Settings) -> UpdatesServer:
    """Logged in and harvested (2 people), with Anna's chat switched on."""
    server = UpdatesServer(build_world(people=2, messages_per_person=12))
    server.log_in(db)
    server.harvest(db)
    set_assist(settings=db, dialog_id=_dialog_id(db, ANNA), on=True)
    return server


def _dialog_id(settings: Settings, peer_id: int) -> int:
    with session_scope(settings) as session:
        dialog = session.exec(select(Dialog).where(Dialog.peer_id == peer_id)).one()
        assert dialog.id is not None
        return dialog.id


def _progress(settings: Settings, job_id: int) -> dict[str, Any]:
    return dict(json.loads(jobs.get_job(settings=settings, job_id=job_id).progress_json))


def _outcomes(settings: Settings, job_id: int) -> list[str]:
    """The live log's outcomes, oldest first."""
    return [e["outcome"] for e in reversed(_progress(settings, job_id).get("log", []))]


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


class Listener:
    """An assist job running in this event loop against the in-memory server."""

    def __init__(self, settings: Settings, server: UpdatesServer, twin: Twin, **options: Any):
        self.settings = settings
        self.job_id = start_assist_job(
            settings=settings, options=AssistOptions(**{**FAST, **options})
        )
        self.shutting_down = False
        self.task = asyncio.create_task(
            run_assist_job(
                settings=settings,
                job_id=self.job_id,
                twin=twin,
                client_factory=server.client_factory(settings),
                shutting_down=lambda: self.shutting_down,
            )
        )

    async def listening(self) -> Listener:
        await _until(
            lambda: _progress(self.settings, self.job_id).get("state") == "listening", "listening"
        )
        return self

    def outcomes(self) -> list[str]:
        return _outcomes(self.settings, self.job_id)

    async def stop(self) -> JobState:
        jobs.request_cancel(settings=self.settings, job_id=self.job_id)
        await asyncio.wait_for(self.task, 30)
        return jobs.get_job(settings=self.settings, job_id=self.job_id).state


def _message_count(settings: Settings) -> int:
    with session_scope(settings) as session:
        return session.exec(select(func.count()).select_from(Message)).one()


def test_an_incoming_message_gets_a_draft_only_in_a_switched_on_chat(
    db: Settings, server: UpdatesServer, twin_model: Twin
) -> None:
    stored_before = _message_count(db)

    async def scenario() -> None:
        listener = await Listener(db, server, twin_model).listening()
        server.receive(BORIS, "secret plan for boris")
        server.receive(ANNA, "do you like tea?")
        await _until(lambda: "draft saved" in listener.outcomes(), "a draft")
        assert await listener.stop() == JobState.cancelled

    asyncio.run(scenario())
    assert [peer for peer, _ in server.saved_drafts] == [ANNA]
    [(_, draft)] = server.saved_drafts
    assert draft.strip() and "<" not in draft
    job = jobs.get_job(settings=db, job_id=jobs.list_jobs(settings=db, kind=JOB_KIND)[0].id or 0)
    [entry] = [e for e in json.loads(job.progress_json)["log"] if e["outcome"] == "draft saved"]
    assert entry["length"] == len(draft) and entry["contact"] == "Anna P0"
    # Privacy: no message text in the job row, and nothing stored beyond the harvest.
    row = job.model_dump_json()
    assert "tea" not in row and "boris" not in row and draft not in row
    assert _message_count(db) == stored_before
    assert server.requests["SendMessageRequest"] == 0


def test_a_newer_draft_of_the_owner_is_left_alone(
    db: Settings, server: UpdatesServer, twin_model: Twin
) -> None:
    async def scenario() -> None:
        listener = await Listener(db, server, twin_model).listening()
        now = int(time.time())
        server.type_draft(ANNA, "I was just typing th", date=now + 1)
        server.receive(ANNA, "are you there?", date=now)
        await _until(lambda: bool(listener.outcomes()), "a log entry")
        assert listener.outcomes() == ["skipped: your draft is newer than the message"]
        # An older draft (from yesterday) is replaced.
        server.type_draft(ANNA, "old idea", date=now - 86400)
        server.receive(ANNA, "hello?", date=now + 2)
        await _until(lambda: "draft saved" in listener.outcomes(), "a draft")
        await listener.stop()

    asyncio.run(scenario())
    assert len(server.saved_drafts) == 1
    assert server.drafts[ANNA].message == server.saved_drafts[0][1]


def test_quiet_period_after_the_owner_writes(
    db: Settings, server: UpdatesServer, twin_model: Twin
) -> None:
    async def scenario() -> None:
        listener = await Listener(db, server, twin_model, quiet_seconds=300).listening()
        now = int(time.time())
        server.send_from_phone(ANNA, "on my way", date=now - 10)
        server.receive(ANNA, "great, see you", date=now)
        await _until(lambda: bool(listener.outcomes()), "a log entry")
        [outcome] = listener.outcomes()
        assert outcome.startswith("skipped: quiet period: you wrote")
        await listener.stop()

    asyncio.run(scenario())
    assert server.saved_drafts == []


def test_a_flood_wait_is_waited_out_then_the_draft_is_saved(
    db: Settings, server: UpdatesServer, twin_model: Twin
) -> None:
    server.fail_next("SaveDraftRequest", "FLOOD_WAIT_1")

    async def scenario() -> None:
        listener = await Listener(db, server, twin_model).listening()
        server.receive(ANNA, "tea?")
        await _until(lambda: "draft saved" in listener.outcomes(), "a draft")
        assert listener.outcomes() == ["waiting 1 second (Telegram's flood limit)", "draft saved"]
        await listener.stop()

    asyncio.run(scenario())
    assert len(server.saved_drafts) == 1


def test_a_long_flood_wait_pauses_drafting(
    db: Settings, server: UpdatesServer, twin_model: Twin
) -> None:
    server.fail_next("SaveDraftRequest", "FLOOD_WAIT_3600")

    async def scenario() -> None:
        listener = await Listener(db, server, twin_model).listening()
        server.receive(ANNA, "tea?")
        await _until(lambda: len(listener.outcomes()) == 1, "a log entry")
        server.receive(ANNA, "hello??")
        await _until(lambda: len(listener.outcomes()) == 2, "a second log entry")
        await listener.stop()
        first, second = listener.outcomes()
        assert first == "skipped: Telegram asks to wait 1 hour"
        assert second.startswith("skipped: Telegram asked to wait (another ")

    asyncio.run(scenario())
    assert server.saved_drafts == []


def test_a_session_ended_elsewhere_stops_the_job_with_a_clear_error(
    db: Settings, server: UpdatesServer, twin_model: Twin
) -> None:
    async def scenario() -> None:
        listener = await Listener(db, server, twin_model, check_seconds=0.05).listening()
        server.revoke_sessions()
        with pytest.raises(TelegramError, match="ended on another device"):
            await asyncio.wait_for(listener.task, 30)
        job = jobs.get_job(settings=db, job_id=listener.job_id)
        assert job.state == JobState.failed
        assert "ended on another device" in (job.error or "") and "twin login" in (job.error or "")

    asyncio.run(scenario())
    assert job_to_resume(settings=db) is None


def test_it_reconnects_after_losing_the_network(
    db: Settings, server: UpdatesServer, twin_model: Twin
) -> None:
    async def scenario() -> None:
        listener = await Listener(db, server, twin_model).listening()
        await server.drop_connections()
        await _until(lambda: "connection lost; reconnecting" in listener.outcomes(), "the loss")
        await _until(lambda: server.listeners() == 1, "a new connection")
        await listener.listening()
        server.receive(ANNA, "back online?")
        await _until(lambda: "draft saved" in listener.outcomes(), "a draft")
        await listener.stop()

    asyncio.run(scenario())
    assert len(server.saved_drafts) == 1


def test_a_restart_resumes_listening(db: Settings, server: UpdatesServer, twin_model: Twin) -> None:
    # A listener whose process died (killed, machine restarted) is found and resumed.
    dead = subprocess.Popen(["true"])
    dead.wait()
    options = AssistOptions(**FAST)
    jobs.start_job(settings=db, kind=JOB_KIND, params=options.model_dump(mode="json"), pid=dead.pid)
    assert job_to_resume(settings=db) == options

    async def scenario() -> None:
        listener = await Listener(db, server, twin_model).listening()
        server.receive(ANNA, "still there?")
        await _until(lambda: "draft saved" in listener.outcomes(), "a draft")
        # Stopping with the app leaves it to start again with the app ...
        listener.shutting_down = True
        await asyncio.wait_for(listener.task, 30)
        assert job_to_resume(settings=db) == options
        # ... a stop the owner asked for does not.
        again = await Listener(db, server, twin_model).listening()
        assert await again.stop() == JobState.cancelled
        assert job_to_resume(settings=db) is None

    asyncio.run(scenario())


def test_no_trained_run_and_no_login_are_plain_errors(db: Settings) -> None:
    with pytest.raises(RunError, match="No finished training run"):
        asyncio.run(assist(settings=db))


def test_not_logged_in_is_a_plain_error(db: Settings, twin_model: Twin) -> None:
    with pytest.raises(TelegramError, match="Not logged in"):
        asyncio.run(assist(settings=db, twin=twin_model))


def test_only_harvested_chats_can_be_switched_on(db: Settings) -> None:
    from twin.store import upsert_dialog

    with session_scope(db) as session:
        dialog = upsert_dialog(session, peer_id=77, name="Imported")
    assert dialog.assist is False
    with pytest.raises(TwinError, match="only imported"):
        set_assist(settings=db, dialog_id=dialog.id or 0, on=True)
    with pytest.raises(TwinError, match="no chat"):
        set_assist(settings=db, dialog_id=999, on=True)


# -- the rules -------------------------------------------------------------------------------


def test_a_reply_with_a_placeholder_is_generated_again_then_given_up() -> None:
    made: list[str] = []

    def replies(texts: list[str]) -> Iterator[str]:
        for text in texts:
            made.append(text)
            yield text

    assert first_clean_reply(replies(["call <PHONE>", "sent you a <photo>", "ok!", "x"])) == "ok!"
    assert made == ["call <PHONE>", "sent you a <photo>", "ok!"]  # stops at the clean one
    assert first_clean_reply(replies(["<EMAIL>", " ", "<CARD> thanks"])) is None
    assert first_clean_reply(iter(["love you <3"])) == "love you <3"


def test_quiet_and_draft_rules() -> None:
    def msg(sent: int, out: bool) -> ChatMessage:
        return ChatMessage(sent, sent, out, "x")

    assert (
        quiet_reason([msg(100, False)], incoming_unix=100, now_unix=101, quiet_seconds=60) is None
    )
    assert quiet_reason(
        [msg(50, True), msg(100, False)], incoming_unix=100, now_unix=101, quiet_seconds=60
    ) == ("quiet period: you wrote 51 seconds ago")
    assert (
        quiet_reason(
            [msg(10, True), msg(100, False)], incoming_unix=100, now_unix=101, quiet_seconds=60
        )
        is None
    )
    assert (
        quiet_reason(
            [msg(100, False), msg(100, True)], incoming_unix=100, now_unix=101, quiet_seconds=0
        )
        == "you already answered"
    )

    def draft(text: str, unix: int) -> types.DraftMessage:
        return types.DraftMessage(message=text, date=dt.datetime.fromtimestamp(unix, tz=dt.UTC))

    assert draft_reason(None, incoming_unix=100, own_digest=None) is None
    assert draft_reason(types.DraftMessageEmpty(), incoming_unix=100, own_digest=None) is None
    assert draft_reason(draft("hi", 99), incoming_unix=100, own_digest=None) is None
    assert draft_reason(draft("hi", 100), incoming_unix=100, own_digest=None) is not None
    assert draft_reason(draft("hi", 200), incoming_unix=100, own_digest=digest("hi")) is None


def test_the_command_switches_chats_and_stops_a_listener(
    db: Settings, server: UpdatesServer
) -> None:
    from typer.testing import CliRunner

    from twin.cli import _register_all, app

    _register_all()
    runner = CliRunner()
    result = runner.invoke(app, ["assist", "--off", "anna p0", "--on", "Boris P1", "--list"])
    assert result.exit_code == 0, result.output
    assert "drafts on for Boris P1" in result.output
    assert "drafts off for Anna P0" in result.output
    listed = {line.split()[-2]: line.split()[0] for line in result.output.splitlines()[2:]}
    assert listed == {"Anna": "off", "Boris": "on", "Deleted": "off"}
    with pytest.raises(TwinError, match="No chat with 'Nobody'"):
        runner.invoke(app, ["assist", "--on", "Nobody"], catch_exceptions=False)
    job_id = start_assist_job(settings=db)
    result = runner.invoke(app, ["assist", "--cancel"])
    assert f"asked listener job {job_id} to stop" in result.output
    assert jobs.cancel_requested(db, job_id)


def test_a_secret_sent_on_its_own_never_reaches_the_prompt() -> None:
    """The code follows the message asking for it: scrubbed as the dataset scrubs it."""
    from twin.assist.rules import context_turns
    from twin.prepare.scrub import Scrubber, ScrubConfig
    from twin.prepare.sessions import ChatMessage

    messages = [
        ChatMessage(tg_id=1, sent_unix=1000, out=False, text="скинь код из смс"),
        ChatMessage(tg_id=2, sent_unix=1010, out=True, text="739201"),
        ChatMessage(tg_id=3, sent_unix=1020, out=False, text="спасибо"),
    ]
    turns = context_turns(messages, me="Me", peer="Anna", scrubber=Scrubber(ScrubConfig()))
    text = "\n".join(turn.text for turn in turns)
    assert "739201" not in text and "<CODE>" in text

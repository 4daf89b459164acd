"""Secrets at rest: after a Telegram login (phone, code, 2FA password) and a harvest, the
plaintext session appears in no file of the data dir (database, -wal, key file aside) and in no
log line; phone, code and password appear in no log line; private files and dirs are 0600/0700.

The web login runs through a real uvicorn server in a thread (so its access log is real), with
the app's Telegram client factory pointed at the in-memory Telegram server.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import API_HASH, API_ID, db_file
from telethon.sessions import StringSession
from tgserver import CODE, PHONE, TelegramServer
from webhelpers import free_port, log_in, uvicorn_in_thread

from twin.config import Settings
from twin.telegram.client import load_session

PASSWORD_2FA = "tr0ub4dor&3 horse"
OWNER_PASSWORD = "correct horse battery"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[_Collect]:
    """Every log record of every logger at DEBUG (Telethon, uvicorn, twin, SQLAlchemy)."""
    handler = _Collect()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    # A server started earlier in this process with uvicorn's default logging config stops its
    # loggers from propagating; here every record must reach the root.
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    propagated = [logger.propagate for logger in uvicorn_loggers]
    for logger in uvicorn_loggers:
        logger.propagate = True
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for logger, before in zip(uvicorn_loggers, propagated, strict=True):
            logger.propagate = before


def _secret_forms(session: str) -> list[bytes]:
    """The session string and the auth key inside it, in the encodings a leak could take."""
    key = StringSession(session).auth_key.key
    assert key is not None
    return [session.encode(), key, key.hex().encode(), base64.b64encode(key)]


def _files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file()]


def test_session_phone_code_and_password_never_rest_in_plaintext(
    db: Settings, all_logs: _Collect, tmp_path: Path
) -> None:
    import uvicorn

    from twin.telegram.harvest import harvest
    from twin.web import create_app
    from twin.web.app import quiet_access_log

    server = TelegramServer(password=PASSWORD_2FA)
    port = free_port()
    app = create_app(db.model_copy(update={"port": port}))  # the Host check compares the port
    app.state.twin.telegram_client_factory = server.client_factory
    quiet_access_log()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="debug", access_log=True, log_config=None
    )
    with (
        uvicorn_in_thread(config),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        log_in(http, OWNER_PASSWORD)
        steps = [
            ("/telegram/credentials", {"api_id": str(API_ID), "api_hash": API_HASH}),
            ("/telegram/phone", {"phone": PHONE}),
            ("/telegram/code", {"code": CODE}),
            ("/telegram/password", {"password": PASSWORD_2FA}),
        ]
        for path, form in steps:
            response = http.post(path, data=form)
            assert response.status_code == 303, (path, response.text)
        assert "Connected as" in http.get("/telegram").text

    settings = db.model_copy(update={"api_id": API_ID, "api_hash": API_HASH})
    session = load_session(settings)
    assert session, "the login stored no session"

    async def run_harvest() -> None:
        client = server.client_factory(settings)(session=session, receive_updates=False)
        try:
            await harvest(settings=settings, client=client, pause_seconds=0)
        finally:
            await client.disconnect()

    asyncio.run(run_harvest())

    log_text = "\n".join(all_logs.lines)
    assert any(line.startswith("uvicorn.access") for line in all_logs.lines), "no access log"
    digits = PHONE.lstrip("+")
    for secret in (session, digits, PHONE, CODE, PASSWORD_2FA, OWNER_PASSWORD, API_HASH):
        assert secret not in log_text, f"{secret[:6]}… is in the logs"

    forms = _secret_forms(session)
    files = _files(db.data_dir)
    assert db_file(db.data_dir) in files
    for path in files:
        data = path.read_bytes()
        for form in forms:
            assert form not in data, f"the session is readable in {path.name}"
    wal = db_file(db.data_dir).with_name("twin.sqlite3-wal")
    assert wal in files, "expected the write-ahead log to be checked too"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_files_and_dirs_are_owner_only(db: Settings, tmp_path: Path) -> None:
    from conftest import make_export, write_export
    from trainhelpers import make_dataset, make_tiny_model, train_here, training_config

    from twin.importer import import_export
    from twin.prepare.dataset import prepare_dataset
    from twin.runs import runs_dir
    from twin.vault import encrypt

    encrypt(db, "x")  # creates the key file
    import_export(
        settings=db, path=write_export(tmp_path / "a.json", make_export(chats=2, messages=200))
    )
    prepare_dataset(settings=db, out_dir=db.dataset_dir, min_messages=1)
    dataset = make_dataset(tmp_path / "style", train=16, val=4)
    model = make_tiny_model(tmp_path / "model", dataset_dir=dataset)
    config = training_config(
        r=2, max_steps=2, global_batch_size=4, checkpoint_interval=1, eval_max_batches=1
    )
    train_here(settings=db, base_model_dir=model, dataset_dir=dataset, run_id="r", config=config)

    assert _mode(db.data_dir) == 0o700
    for name in ("twin.sqlite3", "twin.sqlite3-wal", "twin.sqlite3-shm", "secret.key"):
        assert _mode(db.data_dir / name) == 0o600, name
    assert _mode(db.dataset_dir) == 0o700
    run_dir = runs_dir(db) / "r"
    dirs = [runs_dir(db), run_dir, *(p for p in run_dir.rglob("*") if p.is_dir())]
    assert len(dirs) >= 4  # runs, the run, checkpoints, a step, final
    for path in dirs:
        assert _mode(path) == 0o700, path

"""Shared tools of the fault tests: export builders, database snapshots and a fork server.

The fork server is a Python process that imports the heavy modules (torch, litgpt, Telethon)
once and then forks one child per stage run. A child is a real, separate process doing real
work on real files, so SIGKILL and resource limits hit it exactly as they would hit ``twin``;
forking instead of starting a new interpreter makes a trial cost the work itself, not the
seconds of imports, which is what lets each stage be killed at twenty points in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The web app's fixtures (an app on the test's database, a logged-in owner with a CSRF token).
from web.conftest import app, base_url, client, owner  # noqa: F401

FAULTS_DIR = Path(__file__).resolve().parent
TESTS_DIR = FAULTS_DIR.parent
OWNER_ID = 777
API_ID, API_HASH = 1234567, "0f" * 16
EXIT_TWIN_ERROR = 3
"""A child that stopped on a `TwinError` (a clear message) exits with this code."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: slow fault-injection tests (kills, full disks, servers); run by default"
    )


# -- exports -----------------------------------------------------------------------------------


def make_export(
    *,
    chats: int = 3,
    messages: int = 200,
    seed: int = 0,
    first_id: int = 1,
    start_unix: int = 1_700_000_000,
    texts: list[str] | None = None,
) -> dict[str, Any]:
    """A full-account Telegram Desktop export (the shape `twin.importer` reads).

    Args:
        chats: personal chats (peers 9001, 9002, …), plus one group that must be skipped.
        messages: messages per personal chat.
        seed: makes the text, senders and gaps reproducible.
        first_id: the Telegram id of each chat's first message (a later export of the same
            chats starts lower to overlap with an earlier one).
        start_unix: time of the first message.
        texts: when given, message texts are drawn from these instead of generated words.
    """
    rng = random.Random(seed)
    words = ["hey", "ok", "tea", "tomorrow", "lol", "sure", "why", "train", "cat", "no", "yes"]
    chat_list: list[dict[str, Any]] = []
    for c in range(chats):
        peer = 9001 + c
        when = start_unix
        items = []
        for i in range(messages):
            when += rng.randrange(30, 3000)
            mine = rng.random() < 0.5
            text = rng.choice(texts) if texts else " ".join(rng.choices(words, k=rng.randint(1, 9)))
            item: dict[str, Any] = {
                "id": first_id + i,
                "type": "message",
                "date": "2023-11-14T22:13:20",
                "date_unixtime": str(when),
                "from": "Me" if mine else f"Peer {c}",
                "from_id": f"user{OWNER_ID if mine else peer}",
                "text": text,
                "text_entities": [{"type": "plain", "text": text}],
            }
            if rng.random() < 0.05:
                item["edited_unixtime"] = str(when + 60)
            items.append(item)
        chat_list.append(
            {"name": f"Peer {c}", "type": "personal_chat", "id": peer, "messages": items}
        )
    chat_list.append({"name": "Group", "type": "private_group", "id": 5, "messages": []})
    return {
        "about": "Here is the data you requested.",
        "personal_information": {"user_id": OWNER_ID, "first_name": "Me", "last_name": "Owner"},
        "chats": {"about": "", "list": chat_list},
    }


def write_export(path: Path, export: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    return path


# -- database snapshots ------------------------------------------------------------------------


def db_file(data_dir: Path) -> Path:
    return data_dir / "twin.sqlite3"


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection closed on exit (``sqlite3.connect``'s own context manager only commits)."""
    connection = sqlite3.connect(path)
    try:
        yield connection
    finally:
        connection.close()


def copy_data_dir(source: Path, target: Path) -> Path:
    """Copy a data dir whose database no process has open, as one self-contained file."""
    with connect(db_file(source)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return Path(shutil.copytree(source, target, ignore=shutil.ignore_patterns("*-wal", "*-shm")))


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a database file (``"ok"`` when sound)."""
    with connect(path) as connection:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])


def message_rows(path: Path) -> list[tuple[Any, ...]]:
    """Every message as (peer, tg id, content…), sorted: what a user would call their data.

    Row ids and creation times are left out: a resumed run may number rows differently.
    """
    with connect(path) as connection:
        return sorted(
            connection.execute(
                "SELECT d.peer_id, m.tg_id, m.sent_unix, m.out, m.text, m.reply_to_id, "
                "m.edited_unix, m.media_kind, m.service_kind, m.forwarded "
                "FROM message m JOIN dialog d ON d.id = m.dialog_id"
            ).fetchall()
        )


def all_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, for byte-for-byte before/after comparisons."""
    with connect(path) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {t: sorted(connection.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables}


# -- the fork server ---------------------------------------------------------------------------


def serve_forks() -> None:
    """The fork server's main loop (runs in its own process; see `Forker`).

    Reads one JSON command per line on stdin and answers one JSON line on stdout:
    ``{"op": "run", "target": "module:function", "kwargs": {…}, "log": path}`` → ``{"pid": …}``,
    ``{"op": "wait", "pid": …}`` → ``{"code": …, "signal": …}``.
    """
    for name in sys.argv[1:]:
        __import__(name)
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "run":
            pid = os.fork()
            if pid == 0:
                _run_child(command)
            out.write(json.dumps({"pid": pid}) + "\n")
        elif command["op"] == "wait":
            _, status = os.waitpid(command["pid"], 0)
            out.write(
                json.dumps(
                    {
                        "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                    }
                )
                + "\n"
            )
        out.flush()


def _run_child(command: dict[str, Any]) -> None:
    """In the forked child: run the target, then leave without running the parent's cleanup."""
    import resource

    log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    code = 0
    try:
        if command.get("fsize_limit") is not None:
            # A file may not grow past the limit: writes fail with EFBIG instead of SIGXFSZ.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            limit = command["fsize_limit"]
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        module, function = command["target"].split(":")
        result = getattr(__import__(module), function)(**command["kwargs"])
        print("RESULT", json.dumps(result, default=str), flush=True)
    except BaseException as exc:
        from twin.errors import TwinError

        code = EXIT_TWIN_ERROR if isinstance(exc, TwinError) else 1
        print("ERROR", type(exc).__name__, exc, flush=True)
        if code != EXIT_TWIN_ERROR:
            traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Forker:
    """Client of a fork server started with ``preload`` modules already imported.

    Args:
        preload: modules the server imports once (e.g. ``torch``, ``test_kill``).
        log_dir: where each child's output goes (``<pid>.log``).
    """

    def __init__(self, *, preload: list[str], log_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        # The checkout under test first: an installed twin elsewhere must not stand in for it.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(FAULTS_DIR), str(TESTS_DIR), str(TESTS_DIR.parent)]
        )
        code = "from conftest import serve_forks; serve_forks()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=log_dir,
        )
        self.log_dir = log_dir
        self.logs: dict[int, Path] = {}
        assert json.loads(self._read()) == {"ready": True}

    def _read(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the fork server died"
        return line

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return dict(json.loads(self._read()))

    def start(self, target: str, *, fsize_limit: int | None = None, **kwargs: Any) -> int:
        """Fork a child running ``target(**kwargs)``; return its pid."""
        log = self.log_dir / f"child-{time.monotonic_ns()}.log"
        # Created here: a child killed at once may never get to open it itself.
        log.touch(mode=0o600)
        command = {"op": "run", "target": target, "kwargs": kwargs, "log": str(log)}
        command["fsize_limit"] = fsize_limit
        pid = int(self._ask(command)["pid"])
        self.logs[pid] = log
        return pid

    def wait(self, pid: int) -> dict[str, Any]:
        """Reap the child; ``code`` (exit status) or ``signal`` (what killed it), and its log."""
        status = self._ask({"op": "wait", "pid": pid})
        status["log"] = self.logs[pid].read_text(errors="replace")
        return status

    def run(self, target: str, *, fsize_limit: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """Run ``target`` to its end in a child; return `wait`'s answer."""
        return self.wait(self.start(target, fsize_limit=fsize_limit, **kwargs))

    def kill_after(self, target: str, delay_seconds: float, **kwargs: Any) -> dict[str, Any]:
        """Start ``target`` in a child, SIGKILL it after ``delay_seconds`` (if still alive)."""
        pid = self.start(target, **kwargs)
        time.sleep(delay_seconds)
        # The child is reaped only by `wait`, so its pid cannot have been reused yet.
        os.kill(pid, signal.SIGKILL)
        return self.wait(pid)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def forker_fixture(preload: list[str], tmp: Path) -> Iterator[Forker]:
    forker = Forker(preload=preload, log_dir=tmp)
    try:
        yield forker
    finally:
        forker.close()


def child_settings(data_dir: str | Path, **extra: Any) -> Any:
    """Settings for a child: explicit, so nothing comes from the environment or a .env file."""
    from twin.config import Settings

    return Settings(data_dir=Path(data_dir), _env_file=None, **extra)  # type: ignore[call-arg]

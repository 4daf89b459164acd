"""The model the web app answers with: the newest finished run's, loaded once and kept.

The chat, the API, the game and the reply drafts all ask here, so one copy of the weights
serves them all; it is reloaded when a newer run finishes (one model at a time). The API's
requests speak to it as the person named on the Settings page (`api_peer_name`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from twin.config import Settings
from twin.errors import ChatError, RunError
from twin.files import write_private
from twin.prepare.format import NEUTRAL_ME, clean_name
from twin.runs import TRAIN_HINT, resolve_run_dir
from twin.store import get_owner
from twin.web.conversations import DEFAULT_PEER
from twin.web.deps import DbDep, StateDep, WebState

if TYPE_CHECKING:
    from twin.chat.generate import Twin

_load_lock = threading.Lock()
API_SETTINGS_FILE = "api_settings.json"


def newest_run(state: WebState) -> Path | None:
    """The newest finished run's dir, or None when no run finished yet."""
    try:
        return resolve_run_dir(settings=state.settings)
    except RunError:
        return None


def load_run_twin(state: WebState, run_dir: Path) -> Twin:
    """The model of ``run_dir``, kept loaded until another run is asked for (one at a time).

    Args:
        state: the app's state, which holds the loaded model.
        run_dir: a finished run.
    """
    from twin.chat.load import load_twin
    from twin.chat.remote import remote_twin

    if (remote := remote_twin(settings=state.settings, run_dir=run_dir)) is not None:
        return remote  # type: ignore[return-value]  # answers like a Twin (TWIN_REMOTE_URL)
    with _load_lock:
        loaded = state.chat_model
        if loaded is None or loaded[0] != run_dir:
            state.chat_model = None  # free the old weights before loading the new ones
            state.chat_model = (run_dir, load_twin(run_dir=run_dir))
        return state.chat_model[1]


def get_twin(state: StateDep) -> Twin:
    """The loaded model of the newest finished run (a sync dependency: loads in a thread)."""
    run_dir = newest_run(state)
    if run_dir is None:
        raise ChatError("No training run has finished yet.", hint=TRAIN_HINT)
    return load_run_twin(state, run_dir)


def my_name(db: DbDep) -> str:
    """The owner's display name, as the dataset tags my turns."""
    return get_owner(db).display_name or NEUTRAL_ME


def api_peer_name(settings: Settings) -> str:
    """The default name of the other person for API requests (set on the Settings page).

    Args:
        settings: whose data dir.
    """
    try:
        data = json.loads((settings.data_dir / API_SETTINGS_FILE).read_text(encoding="utf-8"))
        return clean_name(str(data.get("peer") or DEFAULT_PEER))
    except (OSError, ValueError):
        return DEFAULT_PEER


def save_api_peer_name(settings: Settings, peer: str) -> None:
    """Store the default name of the other person for API requests (atomically).

    Args:
        settings: whose data dir.
        peer: the name.
    """
    path = settings.ensure_data_dir() / API_SETTINGS_FILE
    write_private(path, json.dumps({"peer": clean_name(peer)}))

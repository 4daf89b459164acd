"""Serve the real app with the in-memory Telegram server wired in, as its own process, so a
test can kill it and start it again: ``python browser_server.py PORT``.

The account is `tgserver.build_world` with the seed and sizes in ``TGSERVER_WORLD``
(``seed,people,messages``), so every start serves the same chats. A session stored by an
earlier start stays logged in, as a real Telegram session would. ``TGSERVER_FLOOD`` arms one
FLOOD_WAIT of that many seconds for the first history request; ``TGSERVER_HISTORY_DELAY``
slows each history request by that many seconds. Telethon here sleeps through
no flood wait (threshold 0), so every one shows. The demo base model is pre-trained for
``TWIN_TEST_DEMO_STEPS`` steps.

Run with the repository and tests/ on PYTHONPATH (the test does).
"""

from __future__ import annotations

import os
import sys
import time

import uvicorn
from telethon.sessions import StringSession
from tgserver import TelegramServer, _Auth, build_world

from twin.config import Settings, get_settings
from twin.db import upgrade_database
from twin.pipeline import stages
from twin.telegram.client import ClientFactory, load_session, make_client
from twin.web import create_app

PASSWORD_2FA = "blue lagoon"


def world_options() -> dict[str, int]:
    seed, people, messages = (int(v) for v in os.environ["TGSERVER_WORLD"].split(","))
    return {"seed": seed, "people": people, "messages_per_person": messages}


def main() -> None:
    port = int(sys.argv[1])
    settings = get_settings().model_copy(update={"port": port})
    upgrade_database(settings)
    server = TelegramServer(build_world(**world_options()), password=PASSWORD_2FA)
    session = load_session(settings)
    if session is not None:
        server.auths[StringSession(session).auth_key.key_id] = _Auth(authorized=True)
    delay = float(os.environ.get("TGSERVER_HISTORY_DELAY", "0"))
    if delay:
        # A network's pace: each history page takes a while, so a test can act mid-fetch.
        answer_history = server._GetHistoryRequest

        def slow_history(request: object, auth: object) -> object:
            time.sleep(delay)
            return answer_history(request, auth)

        server._GetHistoryRequest = slow_history  # type: ignore[method-assign]
    if os.environ.get("TGSERVER_FLOOD"):
        server.fail_next("GetHistoryRequest", f"FLOOD_WAIT_{os.environ['TGSERVER_FLOOD']}")
    stages.DEMO_PRETRAIN_STEPS = int(os.environ.get("TWIN_TEST_DEMO_STEPS", "20"))

    def factory(credentials: Settings) -> ClientFactory:
        def make(*, session: str | None, receive_updates: bool) -> object:
            client = make_client(
                settings=credentials,
                session=session,
                receive_updates=receive_updates,
                flood_sleep_threshold=0,
            )
            return server.attach(client)

        return make  # type: ignore[return-value]

    app = create_app(settings)
    app.state.twin.telegram_client_factory = factory
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()

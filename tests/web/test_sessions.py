"""Browser sessions live in the database: a restart keeps the owner logged in, logging out
(the Lock button) revokes the session everywhere, and a copy of the database opens nothing."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from twin.config import Settings
from twin.db import get_engine
from twin.models import BrowserSession
from twin.web import create_app
from twin.web.sessions import SessionStore


def _page_csrf(client: TestClient) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    assert match
    return match.group(1)


def test_a_session_survives_a_restart_and_lock_revokes_it(
    owner: TestClient, db: Settings, base_url: str
) -> None:
    cookie = owner.cookies["twin_session"]
    csrf = owner.headers["X-CSRF-Token"]
    with TestClient(create_app(db), base_url=base_url, follow_redirects=False) as restarted:
        restarted.cookies.set("twin_session", cookie)
        assert restarted.get("/contacts", headers={"Accept": "text/html"}).status_code == 200
        assert _page_csrf(restarted) == csrf  # the same session, CSRF token included
        assert restarted.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
    # Revoked for every server process, not only the one that logged out.
    assert owner.get("/contacts", headers={"Accept": "application/json"}).status_code == 401


def test_the_database_holds_no_usable_session_id(owner: TestClient, db: Settings) -> None:
    cookie = owner.cookies["twin_session"]
    with Session(get_engine(db)) as session:
        rows = session.exec(select(BrowserSession)).all()
    assert len(rows) == 1 and rows[0].id_sha256 != cookie
    for path in db.data_dir.glob("twin.sqlite3*"):  # the database, its WAL and shared memory
        assert cookie.encode() not in path.read_bytes(), path
    owner.cookies.clear()
    owner.cookies.set("twin_session", rows[0].id_sha256)  # the stored value opens nothing
    assert owner.get("/contacts", headers={"Accept": "application/json"}).status_code == 401


def test_expired_sessions_are_refused_and_removed(db: Settings) -> None:
    now = [1_000_000.0]
    store = SessionStore(db, ttl_seconds=60, clock=lambda: now[0])
    session, cookie = store.create()
    assert store.get(cookie) == session
    now[0] += 61
    assert store.get(cookie) is None
    with Session(get_engine(db)) as s:
        assert s.exec(select(BrowserSession)).all() == []

"""The vault's locks, each tried from outside over HTTP against the real app and database."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select
from starlette.routing import BaseRoute, Mount

from twin.config import Settings
from twin.db import get_engine
from twin.models import Dialog, Job, Message, Owner
from twin.web import create_app
from twin.web.app import quiet_access_log
from twin.web.deps import api_token_file, issue_api_token
from twin.web.security import LoginThrottle

from .conftest import PASSWORD, form_token, set_password

PUBLIC_ROUTES = {
    ("GET", "/setup"),
    ("POST", "/setup"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/healthz"),
}


def _flatten(routes: list[BaseRoute]) -> list[APIRoute]:
    """Every endpoint, walking into included routers and mounts (except /static)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif isinstance(route, Mount):
            if route.path != "/static":
                found += _flatten(route.routes)
        elif hasattr(route, "original_router"):  # FastAPI ≥0.16x keeps included routers whole
            found += _flatten(route.original_router.routes)
        else:
            raise AssertionError(f"unexpected route type {route!r}: protect it and test it")
    return found


def _every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) for every route of the app."""
    found = []
    for route in _flatten(app.routes):
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        found += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return found


@pytest.mark.parametrize("password_set", [False, True])
def test_every_route_but_setup_login_static_refuses_anonymous(
    client: TestClient, app: FastAPI, password_set: bool
) -> None:
    if password_set:
        set_password(client)
        client.cookies.clear()
    routes = _every_route(app)
    assert len(routes) > 8
    for method, path in routes:
        if (method, path) in PUBLIC_ROUTES:
            continue
        page = client.request(method, path, headers={"Accept": "text/html"})
        api = client.request(method, path, headers={"Accept": "application/json"})
        assert api.status_code == 401, (method, path, api.status_code)
        if method == "GET" and not path.startswith("/v1/"):  # the API never redirects
            assert page.status_code == 303, (method, path)
            expected = "/setup" if not password_set else "/login"
            assert page.headers["location"].startswith(expected), (path, page.headers)
        else:
            assert page.status_code == 401, (method, path)
            if path.startswith("/v1/"):
                assert page.json()["error"]["code"] == "invalid_api_key"


def test_first_run_sets_password_once(client: TestClient, settings: Settings) -> None:
    token = form_token(client, "/setup")
    short = client.post(
        "/setup", data={"password": "short", "confirm": "short", "csrf_token": token}
    )
    assert short.status_code == 400 and "at least 10 characters" in short.text
    differ = client.post(
        "/setup", data={"password": PASSWORD, "confirm": PASSWORD + "x", "csrf_token": token}
    )
    assert differ.status_code == 400 and "differ" in differ.text
    set_password(client)
    with Session(get_engine(settings)) as db:
        stored = db.get(Owner, 1)
        assert stored is not None and stored.password_hash.startswith("$argon2")
        assert PASSWORD not in stored.password_hash
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 200
    # A second setup cannot replace the password.
    client.cookies.clear()
    assert client.get("/setup").headers["location"] == "/login"
    again = client.post("/setup", data={"password": "x" * 12, "confirm": "x" * 12})
    assert again.status_code == 303 and again.headers["location"] == "/login"


def test_setup_and_login_forms_need_their_csrf_token(client: TestClient) -> None:
    form_token(client, "/setup")  # sets the cookie half of the double-submit pair
    response = client.post(
        "/setup", data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 403
    set_password(client)
    client.cookies.clear()
    form_token(client, "/login")
    response = client.post("/login", data={"password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 403


def test_login_logout_and_a_revoked_cookie(client: TestClient) -> None:
    set_password(client)
    client.cookies.clear()
    login = client.post(
        "/login",
        data={
            "password": PASSWORD,
            "csrf_token": form_token(client, "/login"),
            "next": "/contacts",
        },
    )
    assert login.status_code == 303 and login.headers["location"] == "/contacts"
    stolen = client.cookies["twin_session"]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    assert csrf
    out = client.post("/logout", headers={"X-CSRF-Token": csrf.group(1)})
    assert out.status_code == 303
    client.cookies.set("twin_session", stolen)
    assert client.get("/", headers={"Accept": "application/json"}).status_code == 401


def test_login_refuses_open_redirects(client: TestClient) -> None:
    set_password(client)
    client.cookies.clear()
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        token = form_token(client, "/login")
        response = client.post(
            "/login", data={"password": PASSWORD, "csrf_token": token, "next": target}
        )
        assert response.headers["location"] == "/"
        client.cookies.delete("twin_session")


def test_session_cookie_flags(client: TestClient) -> None:
    token = form_token(client, "/setup")
    response = client.post(
        "/setup", data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": token}
    )
    cookie = next(c for c in response.headers.get_list("set-cookie") if "twin_session=" in c)
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= flags
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in flags  # plain http on loopback; browsers would drop it otherwise


def test_session_cookie_is_secure_over_https(app: FastAPI, db: Settings) -> None:
    with TestClient(app, base_url=f"https://127.0.0.1:{db.port}", follow_redirects=False) as c:
        token = form_token(c, "/setup")
        response = c.post(
            "/setup",
            data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": token},
            headers={"Origin": f"https://127.0.0.1:{db.port}"},
        )
    cookie = next(h for h in response.headers.get_list("set-cookie") if "twin_session=" in h)
    assert "secure" in cookie.lower()


def _add_dialog(settings: Settings) -> int:
    with Session(get_engine(settings)) as db:
        dialog = Dialog(peer_id=42, name="Anna")
        db.add(dialog)
        db.commit()
        return dialog.id or 0


def _included(settings: Settings, dialog_id: int) -> bool:
    with Session(get_engine(settings)) as db:
        dialog = db.get(Dialog, dialog_id)
        assert dialog is not None
        return dialog.included


def test_state_changes_need_the_session_csrf_token(owner: TestClient, settings: Settings) -> None:
    dialog_id = _add_dialog(settings)
    token = owner.headers.pop("X-CSRF-Token")
    url = f"/contacts/{dialog_id}/exclude"
    assert owner.post(url).status_code == 403
    assert owner.post(url, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert owner.post(url, data={"csrf_token": "wrong"}).status_code == 403
    assert _included(settings, dialog_id)
    assert owner.post(url, data={"csrf_token": token}).status_code == 303
    assert not _included(settings, dialog_id)
    include = f"/contacts/{dialog_id}/include"
    assert owner.post(include, headers={"X-CSRF-Token": token}).status_code == 303
    assert _included(settings, dialog_id)


def test_cross_origin_writes_are_refused_even_with_the_token(
    owner: TestClient, settings: Settings
) -> None:
    dialog_id = _add_dialog(settings)
    url = f"/contacts/{dialog_id}/exclude"
    assert owner.post(url, headers={"Origin": "http://evil.example"}).status_code == 403
    assert owner.post(url, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    # Another port of this machine is the same site but another origin.
    assert owner.post(url, headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
    null = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}
    assert owner.post(url, headers=null).status_code == 403
    assert _included(settings, dialog_id)
    same = owner.post(url, headers={"Origin": f"http://127.0.0.1:{settings.port}"})
    assert same.status_code == 303
    # Our own forms under Referrer-Policy: no-referrer send "Origin: null" from Chromium.
    own_form = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert owner.post(f"/contacts/{dialog_id}/include", headers=own_form).status_code == 303


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("[::1]:{port}", True),
        ("localhost", True),
        ("evil.example:{port}", False),
        ("evil.example", False),
        ("localhost:1", False),
        ("127.0.0.1.evil.example:{port}", False),
        ("", False),
    ],
)
def test_foreign_host_headers_are_refused(
    client: TestClient, settings: Settings, host: str, allowed: bool
) -> None:
    response = client.get("/login", headers={"Host": host.format(port=settings.port)})
    assert (response.status_code != 400) is allowed, response.text
    if not allowed:
        assert "not one twin answers to" in response.text
        assert f"http://127.0.0.1:{settings.port}/" in response.text
        assert "TWIN_" not in response.text


def test_extra_allowed_hosts_from_settings(db: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_ALLOWED_HOSTS", '["twin.home.arpa"]')
    app = create_app(Settings())
    with TestClient(app, base_url=f"http://twin.home.arpa:{db.port}") as c:
        assert c.get("/setup").status_code == 200


def test_wrong_passwords_are_throttled_with_growing_waits(client: TestClient) -> None:
    set_password(client)
    client.cookies.clear()
    token = form_token(client, "/login")
    waits = []
    for _ in range(4):
        response = client.post("/login", data={"password": "wrong password", "csrf_token": token})
        waits.append(response)
    assert [r.status_code for r in waits[:3]] == [401, 401, 401]
    assert "Try again" not in waits[2].text
    assert waits[3].status_code == 401 and "Try again in 2 s" in waits[3].text
    # Even the right password waits now, and the message says how long.
    blocked = client.post("/login", data={"password": PASSWORD, "csrf_token": token})
    assert blocked.status_code == 429
    assert re.search(r"Try again in \d+ s", blocked.text)
    assert int(blocked.headers["retry-after"]) >= 1
    assert "twin_session" not in client.cookies


def test_api_token_opens_the_api_and_nothing_else(client: TestClient, settings: Settings) -> None:
    set_password(client)
    client.cookies.clear()
    dialog_id = _add_dialog(settings)
    assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    token = issue_api_token(settings)
    assert token not in api_token_file(settings).read_text()
    bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    # No ambient authority (a browser never adds this header by itself), so no CSRF token.
    assert client.get("/v1/models", headers=bearer).status_code == 200
    # Everything else needs the owner's browser session: reading private data, minting a new
    # token (which would lock the owner's client out), settings, uploads, chat.
    digest = api_token_file(settings).read_text()
    for method, path in [
        ("GET", "/contacts"),
        ("GET", "/dataset"),
        ("GET", "/chat"),
        ("GET", "/settings"),
        ("POST", f"/contacts/{dialog_id}/exclude"),
        ("POST", "/settings/token"),
        ("POST", "/settings/api"),
        ("POST", "/import"),
        ("POST", "/chat/reply"),
    ]:
        response = client.request(method, path, headers=bearer, content=b'{"about": 1}')
        assert response.status_code == 401, (method, path, response.status_code)
    assert _included(settings, dialog_id)
    assert api_token_file(settings).read_text() == digest
    issue_api_token(settings)  # a new token replaces the old one
    assert client.get("/v1/models", headers=bearer).status_code == 401


def test_security_headers_on_pages_and_errors(owner: TestClient) -> None:
    for response in (owner.get("/"), owner.get("/login"), owner.get("/nope")):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_pages_carry_no_inline_script(owner: TestClient) -> None:
    for path in ("/", "/import", "/contacts", "/dataset"):
        html = owner.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert " on" + "click=" not in html and "javascript:" not in html


def _db_counts(settings: Settings) -> tuple[int, int, int]:
    with Session(get_engine(settings)) as db:
        return (
            db.exec(select(func.count()).select_from(Dialog)).one(),
            db.exec(select(func.count()).select_from(Message)).one(),
            db.exec(select(func.count()).select_from(Job)).one(),
        )


def _leftovers(settings: Settings) -> list[str]:
    uploads = settings.data_dir / "uploads"
    return [p.name for p in uploads.iterdir()] if uploads.exists() else []


def test_oversized_upload_is_refused_and_nothing_is_kept(
    owner: TestClient, settings: Settings
) -> None:
    assert "(up to 4 GB)" in owner.get("/import").text  # the default limit, readable
    owner.app.state.twin.settings.max_upload_bytes = 1000  # type: ignore[attr-defined]
    before = _db_counts(settings)
    body = json.dumps({"about": "x" * 5000}).encode()
    declared = owner.post("/import", content=body)
    assert declared.status_code == 413 and "upload limit" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    streamed = owner.post("/import", content=chunks())
    assert streamed.status_code == 413
    refusal = streamed.json()
    # The limit and what a person can do about it, never a setting to change.
    assert "upload limit of 1000 bytes" in refusal["detail"] and "twin import" in refusal["hint"]
    assert "TWIN_" not in refusal["detail"] + refusal["hint"]
    assert _db_counts(settings) == before
    assert _leftovers(settings) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n....", "not valid JSON"),
        (b'[{"id": 1}]', "not a Telegram Desktop export"),
        (b'{"firstName": "Anna", "contacts": []}', "not a Telegram Desktop export"),
    ],
)
def test_malformed_uploads_give_a_clear_error_and_store_nothing(
    owner: TestClient, settings: Settings, body: bytes, message: str
) -> None:
    # (A file cut short past its first key is refused by the import job: see test_pages.)
    before = _db_counts(settings)
    response = owner.post("/import", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert "Export Telegram data" in response.json()["hint"]
    assert _db_counts(settings) == before
    assert _leftovers(settings) == []


def test_access_log_drops_query_strings(caplog: pytest.LogCaptureFixture) -> None:
    quiet_access_log()
    logger = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", "/x?code=12345", "1.1", 200)
    assert "12345" not in caplog.text and "/x" in caplog.text


def test_throttle_waits_double_per_client_and_the_bucket_refills() -> None:
    now = [1000.0]
    throttle = LoginThrottle(
        free_attempts=2, base_delay_s=2, max_delay_s=10, global_burst=100, clock=lambda: now[0]
    )
    waits = []
    for _ in range(6):
        assert throttle.begin("a", trusted=False) == 0
        waits.append(throttle.fail("a"))
        now[0] += waits[-1]
    assert waits == [0, 0, 2, 4, 8, 10]  # doubling, then capped
    assert throttle.begin("b", trusted=False) == 0  # another browser is not held
    throttle.succeed("a")
    assert throttle.begin("a", trusted=False) == 0 and throttle.fail("a") == 0
    # The global bucket: untrusted checks at most `global_burst` at once, then one per interval.
    bucket = LoginThrottle(global_burst=3, global_interval_s=5, clock=lambda: now[0])
    assert [bucket.begin(f"c{i}", trusted=False) for i in range(4)] == [0, 0, 0, 5]
    assert len(bucket._clients) == 3  # refused tries leave nothing behind to fill memory
    assert bucket.begin("owner", trusted=True) == 0  # a known browser never waits for others
    now[0] += 5
    assert bucket.begin("c9", trusted=False) == 0


def test_health_check_answers_anonymously_and_says_nothing_else(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}

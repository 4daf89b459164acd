"""Attacks on a running server that once got through, each tried again from outside.

Most go through TestClient; what needs real sockets (bodies that never finish, a client that
leaves mid-upload, headers sent a byte at a time, concurrent logins) runs against uvicorn
configured as ``twin serve`` configures it (`twin.web.server.server_config`).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_private_files import modes, private_modes
from webhelpers import free_port, uvicorn_in_thread

from twin.config import Settings
from twin.errors import ImportFailed
from twin.jobs import get_job
from twin.models import JobState
from twin.nesting import NestingGuard
from twin.web import create_app
from twin.web.app import quiet_access_log
from twin.web.deps import issue_api_token
from twin.web.server import HeaderTimeoutProtocol, server_config

from .conftest import PASSWORD, form_token, log_in, set_password, wait_for_job
from .test_security import _db_counts, _leftovers


@pytest.fixture
def server(db: Settings) -> Iterator[tuple[str, FastAPI]]:
    """The app under uvicorn as `twin serve` runs it, on a free port: ``(base_url, app)``."""
    port = free_port()
    app = create_app(db.model_copy(update={"port": port}))
    with uvicorn_in_thread(server_config(app, host="127.0.0.1", port=port, log_level="warning")):
        yield f"http://127.0.0.1:{port}", app


def _raw(base_url: str, head: bytes, *, timeout_s: float = 20) -> bytes:
    """Send ``head`` on a new connection and read what the server answers until it closes."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b"Connection: close" not in head:
                break
        return answer


# 1. Deeply nested uploads -------------------------------------------------------------------


def test_a_deeply_nested_upload_is_refused_before_any_import(
    owner: TestClient, settings: Settings
) -> None:
    before = _db_counts(settings)
    # The attack nested 100,000 levels; 5,000 is as far past the limit and, if the guard ever
    # went missing, costs ijson megabytes instead of gigabytes.
    body = b'{"about": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    response = owner.post("/import", content=body, headers={"Accept": "application/json"})
    assert response.status_code == 400, response.text
    assert "more than 100 levels deep" in response.json()["detail"]
    assert _db_counts(settings) == before  # no job either
    assert _leftovers(settings) == []


def test_the_nesting_guard_refuses_the_original_bomb_at_its_first_chunk() -> None:
    guard = NestingGuard()
    with pytest.raises(ImportFailed, match="more than 100 levels deep"):
        guard.feed(b'{"about": ' + b"[" * 100_000)
    # Brackets inside strings, escaped quotes and strings cut between chunks do not count.
    text = json.dumps({"t": "[" * 500 + '\\"{' * 300, "n": [[[{"k": "]]]"}]]]}).encode()
    guard = NestingGuard(limit=5)
    start = 0
    while start < len(text):  # 7-byte chunks, never ending inside an escape (as the importer)
        end = start + 7
        while end < len(text) and text[end - 1 : end] == b"\\":
            end += 1
        guard.feed(text[start:end])
        start = end
    assert guard.depth == 0


def test_deep_nesting_past_the_sniffed_head_fails_the_job_and_removes_the_upload(
    owner: TestClient, settings: Settings
) -> None:
    before = _db_counts(settings)
    chat = b'{"id": 2, "type": "personal_chat", "name": "A", "messages": ['
    body = (
        b'{"about": "' + b"x" * 100_000 + b'", "personal_information": {"user_id": 1}, '
        b'"chats": {"list": [' + chat + b"[" * 5_000 + b"]" * 5_000 + b"]}]}}"
    )
    started = owner.post("/import", content=body)
    assert started.status_code == 201, started.text
    job_id = int(started.json()["url"].rsplit("/", 1)[1])
    assert wait_for_job(settings, job_id) == JobState.failed
    job = get_job(settings=settings, job_id=job_id)
    assert "more than 100 levels deep" in (job.error or "")
    assert not json.loads(job.result_json or "{}").get("resumable")
    assert _db_counts(settings)[:2] == before[:2]
    assert _leftovers(settings) == []


# 3. Bodies: authentication first, then a cap --------------------------------------------------


def test_anonymous_bodies_are_not_read_or_parsed(client: TestClient, server: tuple) -> None:
    base_url, _ = server
    with httpx.Client(timeout=120, base_url=base_url) as browser:
        set_password(browser)
    for body in (b"{not json", b'{"messages": 5}'):
        response = client.post("/v1/chat/completions", content=body)
        assert response.status_code == 401, response.text
    # 300 MB announced, 10 bytes sent: the answer comes at once, without waiting for the rest.
    port = base_url.rsplit(":", 1)[1]
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {300 * 1024**2}\r\n\r\n"
    ).encode()
    answer = _raw(base_url, head + b'{"model":1', timeout_s=20)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_every_body_is_capped_after_authentication(owner: TestClient, settings: Settings) -> None:
    owner.app.state.twin.settings.max_request_bytes = 1000  # type: ignore[attr-defined]
    token = issue_api_token(settings)
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    bearer = {"Authorization": f"Bearer {token}"}
    declared = owner.post("/v1/chat/completions", content=big, headers=bearer)
    assert declared.status_code == 413
    assert "larger than twin accepts" in declared.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: cut off while streaming
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    streamed = owner.post("/v1/chat/completions", content=chunks(), headers=bearer)
    assert streamed.status_code == 413 and "error" in streamed.json()
    form = owner.post("/settings/api", data={"peer_name": "y" * 5000})
    assert form.status_code == 413
    assert "larger than twin accepts" in form.json()["detail"]


# 4. Login throttling -----------------------------------------------------------------------


def _login_attempt(base_url: str, cookies: httpx.Cookies | None, password: str) -> int:
    with httpx.Client(timeout=120, base_url=base_url, cookies=cookies) as browser:
        token = form_token(browser, "/login")
        response = browser.post("/login", data={"password": password, "csrf_token": token})
        return response.status_code


def test_concurrent_wrong_passwords_get_no_more_checks_than_allowed(server: tuple) -> None:
    base_url, _ = server
    with httpx.Client(timeout=120, base_url=base_url) as owner_browser:
        set_password(owner_browser)
    with httpx.Client(timeout=120, base_url=base_url) as attacker:
        token = form_token(attacker, "/login")
        cookies = attacker.cookies

        def guess(_: int) -> int:
            with httpx.Client(timeout=120, base_url=base_url, cookies=cookies) as same_browser:
                form = {"password": "wrong password", "csrf_token": token}
                return same_browser.post("/login", data=form).status_code

        with ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(guess, range(40)))
    # 3 free failures, and the 4th that starts the first wait; the rest never reach the hash.
    assert codes.count(401) == 4, codes
    assert codes.count(429) == 36, codes


def test_a_guesser_cannot_keep_the_owner_out(server: tuple) -> None:
    base_url, app = server
    with httpx.Client(timeout=120, base_url=base_url) as owner_browser:
        set_password(owner_browser)  # this browser now carries a device cookie
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', owner_browser.get("/").text)
        assert csrf
        owner_browser.post("/logout", headers={"X-CSRF-Token": csrf.group(1)})
        owner_browser.cookies.delete("twin_session")
        device_cookies = owner_browser.cookies
        # Another local process guesses from a fresh browser each time.
        throttle = app.state.twin.throttle
        throttle.global_burst = 3  # fewer slow password hashes; the rule is the same
        started = time.monotonic()
        with ThreadPoolExecutor(10) as pool:
            codes = list(pool.map(lambda _: _login_attempt(base_url, None, "guess"), range(20)))
        refills = int((time.monotonic() - started) / throttle.global_interval_s) + 1
        assert codes.count(401) <= throttle.global_burst + refills, codes
        assert codes.count(401) + codes.count(429) == 20, codes
        # The owner's browser is not held by someone else's guesses.
        assert _login_attempt(base_url, device_cookies, PASSWORD) == 303
    # A browser that never logged in waits one refill at most, not a lockout.
    with httpx.Client(timeout=120, base_url=base_url) as new_browser:
        token = form_token(new_browser, "/login")
        answer = new_browser.post("/login", data={"password": "guess", "csrf_token": token})
        if answer.status_code == 429:
            assert int(answer.headers["retry-after"]) <= app.state.twin.throttle.global_interval_s


# 5. Validation and unhandled errors ----------------------------------------------------------


def test_an_out_of_range_seed_is_a_400_naming_it(owner: TestClient) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "seed": 2**70}
    response = owner.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "seed"


def test_an_unhandled_error_answers_in_the_routes_format_with_the_headers(
    owner: TestClient,
) -> None:
    def fail() -> None:
        raise RuntimeError("something broke")

    for path in ("/broken", "/v1/broken"):
        owner.app.add_api_route(path, fail)  # type: ignore[attr-defined]
    page = owner.get("/broken", headers={"Accept": "text/html"})
    api = owner.get("/v1/broken")
    data = owner.get("/broken", headers={"Accept": "application/json"})
    for response in (page, api, data):
        assert response.status_code == 500
        assert response.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "something broke" not in response.text
    assert '<a href="/contacts"' in page.text and "went wrong" in page.text  # styled, with nav
    assert api.json()["error"]["type"] == "server_error"
    assert "went wrong" in data.json()["detail"]


# 6. Repeated and malformed headers -----------------------------------------------------------


def test_repeated_or_malformed_host_and_origin_are_refused(
    owner: TestClient, settings: Settings
) -> None:
    own = f"127.0.0.1:{settings.port}"
    two_hosts = owner.get("/settings", headers=[("host", "evil.example"), ("host", own)])
    assert two_hosts.status_code == 400 and "evil.example" not in two_hosts.text
    for host in ("[::1]evil", f"127.0.0.1:0{settings.port}", f"127.0.0.1 :{settings.port}"):
        assert owner.get("/settings", headers={"Host": host}).status_code == 400, host
    origins = [("origin", "http://evil.example"), ("origin", f"http://{own}")]
    assert owner.post("/settings/token", headers=origins).status_code == 400
    assert not (settings.data_dir / "api_token.sha256").exists()
    assert owner.post("/settings/token", headers={"Origin": f"http://{own}"}).status_code == 303


# 7. Files and logs ---------------------------------------------------------------------------


def test_a_client_leaving_mid_upload_logs_one_line_and_leaves_no_file(
    server: tuple, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    base_url, _ = server
    with httpx.Client(timeout=120, base_url=base_url) as browser:
        log_in(browser)
        cookie = browser.cookies["twin_session"]
        csrf = browser.headers["X-CSRF-Token"]
    port = base_url.rsplit(":", 1)[1]
    head = (
        f"POST /import HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: twin_session={cookie}\r\n"
        f"X-CSRF-Token: {csrf}\r\nContent-Length: {10 * 1024**2}\r\n\r\n"
    ).encode()
    with caplog.at_level(logging.INFO):
        with socket.create_connection(("127.0.0.1", int(port))) as sock:
            sock.sendall(head + b'{"about": "' + b"x" * 200_000)
            deadline = time.monotonic() + 20
            while not _leftovers(settings):  # the upload has begun
                assert time.monotonic() < deadline
                time.sleep(0.02)
        deadline = time.monotonic() + 20
        while _leftovers(settings) or "disconnected" not in caplog.text:
            assert time.monotonic() < deadline, (caplog.text, _leftovers(settings))
            time.sleep(0.02)
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text


def test_access_log_hides_conversation_ids(caplog: pytest.LogCaptureFixture) -> None:
    quiet_access_log()
    logger = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        for path in ("/chat/Zk3mQ9xYp2Lw", "/chat/Zk3mQ9xYp2Lw/delete", "/chat/reply"):
            logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", path, "1.1", 200)
    assert "Zk3mQ9xYp2Lw" not in caplog.text
    assert "/chat/…/delete" in caplog.text and "/chat/reply" in caplog.text


def test_half_sent_request_headers_are_cut_off(
    server: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HeaderTimeoutProtocol, "header_timeout_seconds", 0.5)
    base_url, _ = server
    port = base_url.rsplit(":", 1)[1]
    # Headers that never end: the server closes the connection instead of waiting for good.
    answer = _raw(base_url, f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
    assert b"200 OK" not in answer
    # A whole request still gets its answer, and the connection lives on for the next one.
    answer = _raw(base_url, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200")


def test_run_and_checkpoint_files_are_private(trained_run: Path) -> None:
    # The run was trained under the test process's umask (0022 unless set otherwise).
    found = modes(trained_run)
    assert {"run.json", "metrics.jsonl", "final"} <= found.keys(), found
    assert found == private_modes(trained_run)

"""Property-based API testing with schemathesis over the web app's own OpenAPI description.

The app serves no ``/openapi.json`` (``openapi_url=None``: nothing about it is public), so the
schema comes from ``app.openapi()`` and the requests go straight into the ASGI app, with the
owner's session cookie and CSRF header. Every operation gets generated path parameters, query
strings, forms and bodies; none may answer 5xx. Excluded: the Server-Sent-Event streams
(``GET /jobs/{id}/events``, ``GET /telegram/qr/events``), which never end by design.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from web.conftest import PASSWORD, form_token

from twin.config import Settings
from twin.jobs import list_jobs
from twin.models import JobState

pytestmark = pytest.mark.faults
schemathesis = pytest.importorskip("schemathesis")  # a dev dependency (pip install schemathesis)

STREAMS = r".*/events$"
EXAMPLES_PER_OPERATION = 15
INT64 = 2**63 - 1


def test_no_operation_answers_a_server_error(
    owner: TestClient, settings: Settings, base_url: str
) -> None:
    schema = schemathesis.openapi.from_dict(owner.app.openapi())  # type: ignore[attr-defined]
    schema.app = owner.app  # type: ignore[attr-defined]
    operations = [result.ok() for result in schema.exclude(path_regex=STREAMS).get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    calls: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

    for operation in operations:
        # Nothing to vary without parameters or a body: one request says all (and some of
        # those start real work, e.g. building the demo model).
        inputs = list(operation.iter_parameters()) or operation.get_request_payload_content_types()

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION if inputs else 1,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            # Ids beyond SQLite's 64 bits have their own xfail test below.
            assume(all(abs(v) <= INT64 for v in _ints(case.path_parameters)))
            response = case.call(
                base_url=base_url,
                headers={"X-CSRF-Token": owner.headers["X-CSRF-Token"]},
                cookies=dict(owner.cookies),
            )
            calls[case.operation.label] += 1
            statuses[response.status_code] += 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
            )
            if owner.get("/contacts").status_code != 200:  # the case logged out: log in again
                _log_in(owner)

        check()
    _wait_for_jobs(settings)
    print(f"schemathesis: {len(operations)} operations, {sum(calls.values())} requests, "
          f"statuses {dict(sorted(statuses.items()))}")  # fmt: skip


def _ints(parameters: dict[str, Any] | None) -> list[int]:
    return [v for v in (parameters or {}).values() if isinstance(v, int)]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/contacts/{}/include"), ("POST", "/contacts/{}/exclude"), ("GET", "/jobs/{}")],
)
def test_ids_beyond_64_bits_are_refused_cleanly(owner: TestClient, method: str, path: str) -> None:
    response = owner.request(method, path.format(INT64 + 1))
    assert response.status_code < 500


def _log_in(owner: TestClient) -> None:
    owner.cookies.clear()
    form = {"password": PASSWORD, "csrf_token": form_token(owner, "/login")}
    assert owner.post("/login", data=form).status_code == 303
    meta = re.search(r'name="csrf-token" content="([^"]+)"', owner.get("/").text)
    assert meta
    owner.headers["X-CSRF-Token"] = meta.group(1)


def _wait_for_jobs(settings: Settings, timeout: float = 120) -> None:
    """Jobs the requests started (a demo model, a dataset) end before the data dir goes away."""
    deadline = time.monotonic() + timeout
    while active := [
        (j.kind, j.state.value, j.progress_json)
        for j in list_jobs(settings=settings)
        if j.state in (JobState.queued, JobState.running)
    ]:
        assert time.monotonic() < deadline, f"jobs started by requests did not end: {active}"
        time.sleep(0.2)

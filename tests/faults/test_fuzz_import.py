"""Fuzzing the export importer with structured mutations of a valid export.

Each example starts from a copy of a database that already holds an import, feeds the importer a
mutated export (a value replaced by garbage of another type, a key removed, the file cut at a
random byte, invalid UTF-8 spliced in, numbers out of range, deep nesting) and checks the
contract: the import either succeeds or raises `ImportFailed` with a message, and a failed import
leaves every row of every table as it was.

Values of the wrong type that once crashed the importer have their own cases below
(`KNOWN_CRASHES`), so a regression names itself (see docs/reliability.md).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import all_rows, copy_data_dir, integrity, make_export, write_export
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.config import Settings
from twin.db import _cached_engine, get_engine, upgrade_database
from twin.errors import ImportFailed

pytestmark = pytest.mark.faults

EXAMPLES = 300
INT64 = 2**63 - 1
NEST = "<deeply nested lists>"

BASE = make_export(chats=2, messages=6, seed=11, first_id=100)
SINGLE_CHAT = copy.deepcopy(BASE["chats"]["list"][0])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose database already holds an import (the state a failure must keep)."""
    root = tmp_path_factory.mktemp("fuzz-template")
    settings = Settings(data_dir=root / "data")
    upgrade_database(settings)
    from twin.importer import import_export

    import_export(settings=settings, path=write_export(root / "seed.json", make_export(chats=2)))
    get_engine(settings).dispose()
    _cached_engine.cache_clear()
    return root / "data"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> Any:
    if not path:
        return value
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


# Any text, lone surrogates included (they are written as JSON escapes), and JSON numbers
# that fit SQLite.
texts = st.text(max_size=20)
sane_ints = st.integers(-INT64, INT64)
garbage = st.recursive(
    st.none() | st.booleans() | sane_ints | st.floats(allow_nan=False) | texts,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["id", "type", "text", "messages", "x"]) | texts, children, max_size=4
        )
    ),
    max_leaves=12,
)


@st.composite
def mutated_exports(draw: st.DrawFn) -> bytes:
    document = copy.deepcopy(draw(st.sampled_from([BASE, SINGLE_CHAT])))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(document)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["replace", "delete", "number", "nest"]))
        if kind == "delete" and path:
            document = _set(document, path, None, delete=True)
        elif kind == "number":
            number = draw(st.sampled_from([0, -1, INT64, -INT64, 1e308, -1e-300, 2**53 + 1]))
            document = _set(document, path, draw(st.sampled_from([number, str(number)])))
        elif kind == "nest":
            document = _set(document, path, NEST)  # spliced in as text: json would recurse
        else:
            document = _set(document, path, draw(garbage))
    data = json.dumps(document, ensure_ascii=draw(st.booleans())).encode("utf-8")
    depth = draw(st.integers(10, 5000))
    data = data.replace(json.dumps(NEST).encode(), b"[" * depth + b"{}" + b"]" * depth)
    damage = draw(st.sampled_from(["none", "none", "truncate", "bytes"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif damage == "bytes":
        at = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x00", b"\xf0\x9f\x98"]))
        data = data[:at] + junk + data[at:]
    return data


_counter = iter(range(10**9))


def _import_into_copy(template: Path, tmp: Path, data: bytes) -> None:
    """Import ``data`` into a fresh copy of the template database; check the contract."""
    from twin.importer import import_export

    data_dir = tmp / f"ex{next(_counter)}"
    copy_data_dir(template, data_dir)
    settings = Settings(data_dir=data_dir)
    before = all_rows(data_dir / "twin.sqlite3")
    export = data_dir / "result.json"
    export.write_bytes(data)
    try:
        import_export(settings=settings, path=export)
    except ImportFailed as exc:
        assert exc.message.strip() and exc.hint, "an error without a message or a hint"
        assert all_rows(data_dir / "twin.sqlite3") == before, "a failed import left rows behind"
    finally:
        get_engine(settings).dispose()
        _cached_engine.cache_clear()
    assert integrity(data_dir / "twin.sqlite3") == "ok"
    shutil.rmtree(data_dir)


@st.composite
def damaged_files(draw: st.DrawFn) -> bytes:
    """A valid export damaged as a file: cut short, a stray byte spliced in, or a chat
    replaced by thousands of nested lists."""
    document = copy.deepcopy(draw(st.sampled_from([BASE, SINGLE_CHAT])))
    nest = draw(st.booleans()) and "chats" in document
    if nest:
        document["chats"]["list"][draw(st.integers(0, 2))] = NEST
    data = json.dumps(document, ensure_ascii=draw(st.booleans())).encode("utf-8")
    depth = draw(st.integers(10, 20_000))
    data = data.replace(json.dumps(NEST).encode(), b"[" * depth + b"]" * depth)
    if not nest or draw(st.booleans()):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if draw(st.booleans()):
            data = data[:at]
        else:
            junk = draw(
                st.sampled_from(
                    [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\x00", b"}", b'"']
                )
            )
            data = data[:at] + junk + data[at:]
    return data


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ_SETTINGS
@given(data=damaged_files())
def test_damaged_files_fail_clearly_and_change_nothing(
    data: bytes, template: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _import_into_copy(template, tmp_path_factory.getbasetemp(), data)


@FUZZ_SETTINGS
@given(data=mutated_exports())
def test_mutated_exports_import_whole_or_fail_clearly(
    data: bytes, template: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _import_into_copy(template, tmp_path_factory.getbasetemp(), data)


def _with(change: Any) -> bytes:
    document = copy.deepcopy(BASE)
    change(document)
    return json.dumps(document).encode()


def _message(document: dict[str, Any]) -> dict[str, Any]:
    return document["chats"]["list"][0]["messages"][2]


KNOWN_CRASHES = {
    "message-not-an-object": _with(lambda d: d["chats"]["list"][0]["messages"].__setitem__(2, 5)),
    "list-as-reply-id": _with(lambda d: _message(d).__setitem__("reply_to_message_id", [1])),
    "null-message-id": _with(lambda d: _message(d).__setitem__("id", None)),
    "date-beyond-64-bits": _with(lambda d: _message(d).__setitem__("date_unixtime", 1e308)),
    "null-entity-text": _with(
        lambda d: _message(d).__setitem__("text_entities", [{"type": "plain", "text": None}])
    ),
    "text-user-id": _with(lambda d: d["personal_information"].__setitem__("user_id", "me")),
    # An encoded surrogate: UnicodeDecodeError from the parser, not "not valid JSON near …".
    "utf8-encoded-surrogate": _with(lambda d: None).replace(b'"Me"', b'"M\xed\xa0\x80"', 1),
}


@pytest.mark.parametrize("case", sorted(KNOWN_CRASHES))
def test_known_malformed_values_fail_clearly(case: str, template: Path, tmp_path: Path) -> None:
    _import_into_copy(template, tmp_path, KNOWN_CRASHES[case])

"""The store: migrations equal the models; SQLite pragmas; idempotent upserts."""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel

from twin.config import Settings
from twin.db import get_engine, upgrade_database
from twin.models import Source
from twin.store import (
    ChatMessage,
    get_owner,
    list_dialogs,
    set_included,
    update_owner,
    upsert_dialog,
    upsert_messages,
)


def test_migrations_produce_exactly_the_models_schema(db: Settings) -> None:
    with get_engine(db).connect() as connection:
        context = MigrationContext.configure(connection, opts={"render_as_batch": True})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_upgrade_is_idempotent_and_database_is_private(db: Settings) -> None:
    upgrade_database(db)
    path = db.data_dir / "twin.sqlite3"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db.data_dir).st_mode) == 0o700
    with get_engine(db).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migrations_run_from_several_threads_at_once(db: Settings) -> None:
    # Two "Train" clicks migrate at the same moment; Alembic's module-level context must not
    # make one of them fail.
    threads = 4
    start = threading.Barrier(threads)

    def migrate(_: int) -> None:
        start.wait()
        upgrade_database(db)

    for _ in range(3):
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(migrate, range(threads)))


def test_upsert_messages_is_idempotent_and_applies_edits(db: Settings) -> None:
    with Session(get_engine(db)) as session:
        dialog = upsert_dialog(session, peer_id=42, name="Anna")
        assert dialog.id is not None
        batch = [
            ChatMessage(tg_id=i, sent_unix=1000 + i, out=i % 2 == 0, text=f"m{i}")
            for i in range(1, 6)
        ]
        assert (
            upsert_messages(session, dialog_id=dialog.id, messages=batch, source=Source.export) == 5
        )
        assert upsert_messages(session, dialog_id=dialog.id, messages=batch, source=Source.api) == 0
        edited = [batch[0]._replace(text="m1 (fixed)", edited_unix=2000)]
        assert (
            upsert_messages(session, dialog_id=dialog.id, messages=edited, source=Source.api) == 0
        )
        session.commit()
        texts = (
            session.connection()
            .exec_driver_sql("SELECT text, source FROM message WHERE tg_id = 1")
            .one()
        )
        assert tuple(texts) == ("m1 (fixed)", "export")
        [public] = list_dialogs(session)
        assert (public.message_count, public.my_message_count) == (5, 2)
        assert set_included(session, dialog_ids=[dialog.id], included=False) == 1
        assert list_dialogs(session)[0].included is False


def test_the_owner_row_is_updated_by_column_and_stamped(db: Settings) -> None:
    with Session(get_engine(db)) as session:
        before = get_owner(session).updated_unix
        owner = update_owner(session, first_name="Olga", last_name="Ivanova", username="olga")
        session.commit()
        assert owner.display_name == "Olga Ivanova" and owner.updated_unix >= before
        with pytest.raises(AttributeError, match="no column 'nmae'"):
            update_owner(session, nmae="typo")
    with Session(get_engine(db)) as session:
        assert get_owner(session).username == "olga"


def test_a_dialog_seen_again_keeps_what_the_new_sighting_lacks(db: Settings) -> None:
    with Session(get_engine(db)) as session:
        first = upsert_dialog(session, peer_id=5, name="Anna", username="anna", access_hash=77)
        assert (first.name, first.source) == ("Anna", Source.api)
        again = upsert_dialog(session, peer_id=5, name="", source=Source.export)
        assert (again.name, again.username, again.access_hash) == ("Anna", "anna", 77)
        assert again.source == Source.api and again.id == first.id
        renamed = upsert_dialog(session, peer_id=5, name="Anna K", username="", access_hash=78)
        assert (renamed.name, renamed.username, renamed.access_hash) == ("Anna K", "", 78)

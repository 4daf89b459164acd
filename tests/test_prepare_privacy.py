"""prepare_dataset end to end on what leaked before: secrets split over messages, names."""

from __future__ import annotations

from twin.config import Settings
from twin.db import session_scope
from twin.models import Source
from twin.prepare import prepare_dataset
from twin.prepare.scrub import ScrubConfig
from twin.store import ChatMessage, get_owner, upsert_dialog, upsert_messages

T0 = 1_700_000_000


def add_chat(settings: Settings, *, peer_id: int, name: str, lines: list[tuple[bool, str]]) -> None:
    messages = [
        ChatMessage(tg_id=i + 1, sent_unix=T0 + 60 * i, out=mine, text=text)
        for i, (mine, text) in enumerate(lines)
    ]
    with session_scope(settings) as session:
        dialog = upsert_dialog(session, peer_id=peer_id, name=name, source=Source.export)
        assert dialog.id is not None
        upsert_messages(session, dialog_id=dialog.id, messages=messages, source=Source.export)


def dataset_text(settings: Settings, **options: object) -> str:
    out = settings.data_dir / "dataset"
    prepare_dataset(settings=settings, out_dir=out, min_messages=1, **options)  # type: ignore[arg-type]
    return "".join((out / name).read_text(encoding="utf-8") for name in ("train.json", "val.json"))


def test_a_secret_sent_as_its_own_message_never_reaches_the_dataset(db: Settings) -> None:
    add_chat(
        db,
        peer_id=1,
        name="Anna",
        lines=[
            (False, "привет, пароль от вайфая скинь"),
            (True, "пароль от вайфая"),
            (True, "Kx7pQ2zRw"),
            (False, "а код из смс?"),
            (True, "739201"),
            (False, "и от сервера"),
            (True, "логин ivanov"),
            (True, "пароль"),
            (True, "Qwerty!2024"),
            (False, "спасибо"),
            (True, "не за что"),
        ],
    )
    text = dataset_text(db)
    for secret in ("Kx7pQ2zRw", "739201", "Qwerty!2024"):
        assert secret not in text


def test_names_in_instructions_and_tags_are_scrubbed_and_blocklisted(db: Settings) -> None:
    with session_scope(db) as session:
        owner = get_owner(session)
        owner.first_name, owner.last_name = "Alex", "Morozov"
    lines = [(False, "hi"), (True, "hey"), (False, "how are you?"), (True, "fine")]
    add_chat(db, peer_id=1, name="+7 916 555 12 34", lines=lines)
    add_chat(db, peer_id=2, name="Вася ivan.petrov@mail.ru", lines=lines)
    add_chat(db, peer_id=3, name="Alex Morozov", lines=lines)
    text = dataset_text(db, scrub_config=ScrubConfig(blocklist=["Morozov"]))
    for leaked in ("916", "555 12 34", "ivan.petrov", "Morozov"):
        assert leaked not in text
    assert "with Contact" in text and "with Вася" in text
    assert "You are Alex." in text and "with Alex (contact)" in text

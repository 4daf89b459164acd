"""The database tables (SQLModel). Times are UTC unix seconds (``*_unix``), ids are Telegram's.

A message is identified by ``(dialog_id, tg_id)`` whichever way it arrived (API or export), so
both sources merge and every write is an idempotent upsert.
"""

from __future__ import annotations

import enum

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class Source(enum.StrEnum):
    """Where a row came from."""

    api = "api"
    export = "export"


class JobState(enum.StrEnum):
    """The life of a background job."""

    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class AccountName(SQLModel):
    """Who a Telegram account is, as Telegram names it (the owner's row, a login, an export)."""

    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None

    @property
    def display_name(self) -> str:
        """First and last name as Telegram shows them ("" before either is known): the name
        my turns are tagged with, in the dataset and in every prompt the twin answers."""
        return " ".join(part for part in (self.first_name, self.last_name) if part)


class Owner(AccountName, table=True):
    """The one person whose twin this is (a single row, ``id == 1``)."""

    id: int | None = Field(default=None, primary_key=True)
    tg_user_id: int | None = Field(default=None, sa_column=Column(BigInteger, unique=True))
    phone: str | None = None
    # Telethon StringSession, encrypted with Fernet (the key never lives in this database).
    session_encrypted: str | None = None
    api_id: int | None = None
    api_hash_encrypted: str | None = None
    # argon2 hash of the web app's owner password.
    password_hash: str | None = None
    created_unix: int = 0
    updated_unix: int = 0


class DialogBase(SQLModel):
    peer_id: int = Field(sa_column=Column(BigInteger, unique=True, nullable=False))
    name: str = ""
    username: str | None = None
    included: bool = True


class Dialog(DialogBase, table=True):
    """A private one-to-one chat with one person (the peer)."""

    id: int | None = Field(default=None, primary_key=True)
    # Needed with peer_id to rebuild InputPeerUser without another API call; None for exports.
    access_hash: int | None = Field(default=None, sa_column=Column(BigInteger))
    source: Source = Source.api
    created_unix: int = 0
    assist: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    """True when the twin may write reply drafts in this chat (`twin.assist.drafts`)."""


class DialogPublic(DialogBase):
    id: int
    message_count: int = 0
    my_message_count: int = 0


class Message(SQLModel, table=True):
    """One message of a dialog, as Telegram numbers it."""

    __table_args__ = (
        UniqueConstraint("dialog_id", "tg_id", name="uq_message_dialog_tg_id"),
        Index("ix_message_dialog_sent", "dialog_id", "sent_unix"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dialog_id: int = Field(foreign_key="dialog.id", ondelete="CASCADE")
    tg_id: int
    sent_unix: int
    out: bool
    """True when the owner sent it."""
    text: str = ""
    """Raw text without formatting (Telethon's ``message``, the export's joined ``text``)."""
    reply_to_id: int | None = None
    edited_unix: int | None = None
    media_kind: str | None = None
    """photo, voice, video_message, video, sticker, animation, audio, file, contact, location,
    poll, … or None for plain text."""
    service_kind: str | None = None
    """For service messages (no text), the action: phone_call, pin_message, …"""
    forwarded: bool = False
    source: Source = Source.api
    deleted_unix: int | None = None
    """A tombstone: when the harvest found the message deleted in Telegram (by either side).
    The row stays so that no later import brings it back; datasets leave it out."""


class HarvestState(SQLModel, table=True):
    """Per-dialog progress of the API harvest; committed with each page of messages."""

    dialog_id: int = Field(foreign_key="dialog.id", primary_key=True, ondelete="CASCADE")
    last_id: int = 0
    """Highest Telegram message id stored from the API."""
    complete: bool = False
    """True when the last run reached the newest message."""
    last_run_unix: int | None = None
    """Telegram's clock (not this machine's) when the last run stored this dialog's messages."""
    retry_after_unix: int | None = None
    """Skip the dialog until then (local clock): the backoff after an error."""
    last_error: str | None = None
    """Telegram's name for the last error (``PEER_ID_INVALID``), kept until a run succeeds."""
    failures: int = 0
    """Runs in a row that failed on this dialog (sets the backoff)."""


class RequestWait(SQLModel, table=True):
    """A FLOOD_WAIT Telegram imposed on one kind of request: none is sent before the time."""

    request: str = Field(primary_key=True)
    """Telegram's method name, e.g. ``messages.getHistory``."""
    seconds: int
    retry_after_unix: int
    """Local clock: when requests of this kind may be sent again."""


class Job(SQLModel, table=True):
    """Long work (harvest, import, prepare, train) with its state, for the CLI and the web."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    state: JobState = JobState.queued
    params_json: str = "{}"
    progress_json: str = "{}"
    result_json: str | None = None
    error: str | None = None
    pid: int | None = None
    created_unix: int = 0
    updated_unix: int = 0
    heartbeat_unix: int | None = None


class BrowserSession(SQLModel, table=True):
    """A logged-in browser of the web app (survives a restart; logout deletes it).

    The cookie holds a random id; only its SHA-256 is stored, so a copy of the database opens
    no session.
    """

    __tablename__ = "web_session"

    id_sha256: str = Field(primary_key=True)
    csrf_token: str
    created_unix: int
    expires_unix: int = Field(index=True)

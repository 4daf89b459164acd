"""The in-memory Telegram server (`tgserver.TelegramServer`) plus what a listening client needs:
pushed updates (new messages as ``UpdateShortMessage``, numbered by ``pts`` as Telegram numbers
them, so Telethon's own update handling accepts them), drafts (messages.saveDraft, and
messages.getPeerDialogs showing each dialog's draft with its date), ending a session from
"another device", and dropping the connection.
"""

from __future__ import annotations

import time
from typing import Any

from telethon.tl import types
from tgserver import ME_ID, TelegramServer, World, _Auth, _utc


class UpdatesServer(TelegramServer):
    """A `TelegramServer` that pushes new messages to connected clients and keeps drafts.

    Tests read ``drafts`` (peer id → the chat's current DraftMessage) and ``saved_drafts``
    (every messages.saveDraft, as ``(peer id, text)``).
    """

    def __init__(self, world: World | None = None, **options: Any) -> None:
        super().__init__(world, **options)
        self.pts = 1
        self.drafts: dict[int, types.DraftMessage] = {}
        self.saved_drafts: list[tuple[int, str]] = []

    # -- what happens elsewhere ----------------------------------------------------------------

    def receive(self, peer_id: int, text: str, *, date: int | None = None) -> int:
        """``peer_id`` sends the owner ``text``: stored in the history and pushed to every
        connected client that asked for updates; returns the message id."""
        return self._new_message(peer_id, text, out=False, date=date)

    def send_from_phone(self, peer_id: int, text: str, *, date: int | None = None) -> int:
        """The owner writes ``text`` to ``peer_id`` from another device."""
        return self._new_message(peer_id, text, out=True, date=date)

    def type_draft(self, peer_id: int, text: str, *, date: int | None = None) -> None:
        """The owner starts typing in the chat with ``peer_id`` on another device."""
        self.drafts[peer_id] = types.DraftMessage(
            message=text, date=_utc(int(time.time()) if date is None else date)
        )

    def revoke_sessions(self) -> None:
        """Every session is ended (Settings → Devices → Terminate all other sessions)."""
        for auth in self.auths.values():
            auth.authorized = False

    async def drop_connections(self) -> None:
        """The network goes away: every connected client loses its connection."""
        for sender in list(self._senders):
            if sender.is_connected():
                await sender.disconnect()

    def listeners(self) -> int:
        """How many connected clients receive updates."""
        return sum(1 for s in self._senders if s.is_connected() and s.wants_updates)

    def _new_message(self, peer_id: int, text: str, *, out: bool, date: int | None) -> int:
        date = int(time.time()) if date is None else date
        msg_id = self.world.add_message(peer_id, date=date, out=out, text=text)
        self.pts += 1
        update = types.UpdateShortMessage(
            id=msg_id,
            user_id=peer_id,
            message=text,
            pts=self.pts,
            pts_count=1,
            date=_utc(date),
            out=out,
        )
        for sender in self._senders:
            if sender.is_connected() and sender.wants_updates:
                sender.push_update(update)
        return msg_id

    # -- request handlers ----------------------------------------------------------------------

    def _GetStateRequest(self, request: Any, auth: _Auth) -> types.updates.State:
        return types.updates.State(
            pts=self.pts, qts=0, date=_utc(int(time.time())), seq=1, unread_count=0
        )

    def _GetHistoryRequest(self, request: Any, auth: _Auth) -> Any:
        # "No offset date" travels as 0 and comes back as the epoch; the base server would
        # take it as a real date and find nothing older (Telethon's plain get_messages).
        if request.offset_date is not None and request.offset_date.timestamp() == 0:
            request.offset_date = None
        return super()._GetHistoryRequest(request, auth)

    def _SaveDraftRequest(self, request: Any, auth: _Auth) -> bool:
        key = self._peer_key(request.peer, request)
        self.drafts[key] = types.DraftMessage(message=request.message, date=_utc(int(time.time())))
        self.saved_drafts.append((key, request.message))
        return True

    def _GetPeerDialogsRequest(self, request: Any, auth: _Auth) -> types.messages.PeerDialogs:
        dialogs, messages = [], []
        for dialog_peer in request.peers:
            key = self._peer_key(dialog_peer.peer, request)
            top = self.world.history[key][-1]
            messages.append(top)
            dialogs.append(self.world.dialog(key, draft=self.drafts.get(key)))
        return types.messages.PeerDialogs(
            dialogs=dialogs,
            messages=messages,
            chats=[],
            users=[self.world.me, *(self.world.users[k] for k in self.world.users if k != ME_ID)],
            state=self._GetStateRequest(request, auth),
        )

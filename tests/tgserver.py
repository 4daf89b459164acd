"""An in-memory Telegram server that Telethon's real `TelegramClient` talks to.

It replaces the object behind ``client._sender`` (Telethon's MTProtoSender: ``connect``,
``is_connected``, ``disconnect``, ``send(request) -> Future``) and answers the API methods login
and harvest use. Requests and answers cross it as bytes, the way they would cross the network:
the request is serialized and parsed back, the answer is serialized and read with the request's
own ``read_result``, and errors are the `RPCError` subclasses Telethon builds from an
``rpc_error`` (``FLOOD_WAIT_30`` → `FloodWaitError` with ``seconds == 30``).

Accounts are identified by auth key, as on Telegram: a StringSession saved after login carries
the key, and a client built from it later is logged in.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from telethon import TelegramClient
from telethon.crypto import AuthKey
from telethon.errors import rpc_message_to_error
from telethon.extensions import BinaryReader
from telethon.password import compute_hash
from telethon.tl import TLObject, TLRequest, functions, types
from telethon.tl.alltlobjects import LAYER

from twin.config import Settings
from twin.telegram import login
from twin.telegram.client import ClientFactory, load_session, make_client
from twin.telegram.harvest import HarvestSummary, harvest

ME_ID = 1000
PHONE = "+447911123456"
CODE = "24680"
# The 2048-bit safe prime Telegram uses for SRP (telethon.password knows it as "good").
SRP_P = int.from_bytes(
    bytes.fromhex(
        "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F48198A0AA7C14058229493D2"
        "2530F4DBFA336F6E0AC925139543AED44CCE7C3720FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454"
        "F18FAF8C595F642477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4A4A695811051"
        "907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754FD17ED950D5965B4B9DD46582DB1178D169C6B"
        "C465B0D6FF9CA3928FEF5B9AE4E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
        "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B"
    ),
    "big",
)
SRP_G = 3


def _sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _pad(n: int) -> bytes:
    return n.to_bytes(256, "big")


def _utc(unix: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix, tz=dt.UTC)


# -- the account's data ----------------------------------------------------------------------


@dataclass
class World:
    """The account: me, the peers, and every chat's history (newest last)."""

    me: types.User
    users: dict[int, types.User]
    chats: dict[int, types.Chat | types.Channel]
    history: dict[int, list[types.Message | types.MessageService]]
    """Keyed by peer id: a user id, or minus a chat/channel id."""
    next_id: int = 1

    def peer_of(self, key: int) -> types.TypePeer:
        if key > 0:
            return types.PeerUser(key)
        chat = self.chats[-key]
        return types.PeerChannel(-key) if isinstance(chat, types.Channel) else types.PeerChat(-key)

    def dialog(self, key: int, **extra: Any) -> types.Dialog:
        """The dialog row of a chat: everything read, topped by its newest message."""
        return types.Dialog(
            peer=self.peer_of(key),
            top_message=self.history[key][-1].id,
            read_inbox_max_id=0,
            read_outbox_max_id=0,
            unread_count=0,
            unread_mentions_count=0,
            unread_reactions_count=0,
            unread_poll_votes_count=0,
            notify_settings=types.PeerNotifySettings(),
            **extra,
        )

    def add_message(self, key: int, *, date: int, out: bool, text: str, **extra: Any) -> int:
        """Append a message to a chat; returns its id (ids grow across all chats, as for users)."""
        msg_id, self.next_id = self.next_id, self.next_id + 1
        from_id = types.PeerUser(ME_ID) if out or key < 0 else None
        self.history.setdefault(key, []).append(
            types.Message(
                id=msg_id,
                peer_id=self.peer_of(key),
                date=_utc(date),
                message=text,
                out=out,
                from_id=from_id if key < 0 else None,
                **extra,
            )
        )
        return msg_id

    def edit_message(self, key: int, msg_id: int, text: str, *, when: int) -> None:
        message = next(m for m in self.history[key] if m.id == msg_id)
        message.message = text
        message.edit_date = _utc(when)

    def delete_messages(self, key: int, *msg_ids: int) -> None:
        """Delete messages for both sides (or clear the history, with every id)."""
        self.history[key] = [m for m in self.history[key] if m.id not in msg_ids]

    def message(self, msg_id: int) -> types.Message | types.MessageService | None:
        return next((m for ms in self.history.values() for m in ms if m.id == msg_id), None)


_WORDS = ["hi", "hello", "sure", "ok", "thanks", "tomorrow", "coffee", "later", "yes", "no"]


def _document(rng: random.Random, mime: str, *attributes: Any) -> types.MessageMediaDocument:
    return types.MessageMediaDocument(
        document=types.Document(
            id=rng.getrandbits(62),
            access_hash=rng.getrandbits(62),
            file_reference=b"ref",
            date=_utc(0),
            mime_type=mime,
            size=rng.randrange(1, 1 << 20),
            dc_id=2,
            attributes=list(attributes),
        )
    )


def media_samples(rng: random.Random) -> dict[str, Any]:
    """One TL media object per kind the harvest records (``None`` kind: a web page preview)."""
    return {
        "photo": types.MessageMediaPhoto(
            photo=types.Photo(
                id=1, access_hash=1, file_reference=b"", date=_utc(0), sizes=[], dc_id=2
            )
        ),
        "voice": _document(rng, "audio/ogg", types.DocumentAttributeAudio(duration=3, voice=True)),
        "video_message": _document(
            rng,
            "video/mp4",
            types.DocumentAttributeVideo(duration=5, w=240, h=240, round_message=True),
        ),
        "video": _document(
            rng, "video/mp4", types.DocumentAttributeVideo(duration=9, w=640, h=360)
        ),
        "sticker": _document(
            rng,
            "image/webp",
            types.DocumentAttributeSticker(alt="🙂", stickerset=types.InputStickerSetEmpty()),
        ),
        "animation": _document(
            rng,
            "video/mp4",
            types.DocumentAttributeAnimated(),
            types.DocumentAttributeVideo(1, 1, 1),
        ),
        "audio": _document(
            rng, "audio/mpeg", types.DocumentAttributeAudio(duration=200, title="Song")
        ),
        "file": _document(rng, "application/pdf", types.DocumentAttributeFilename("a.pdf")),
        "contact": types.MessageMediaContact("+447700900999", "Ann", "", "", 0),
        "location": types.MessageMediaGeo(types.GeoPoint(long=13.4, lat=52.5, access_hash=0)),
        "poll": types.MessageMediaPoll(
            poll=types.Poll(
                id=1,
                question=types.TextWithEntities("Lunch?", []),
                answers=[types.PollAnswer(types.TextWithEntities("yes", []), b"1")],
                hash=0,
            ),
            results=types.PollResults(),
        ),
        None: types.MessageMediaWebPage(types.WebPageEmpty(id=1, url="https://example.org")),
    }


def build_world(
    *,
    seed: int = 7,
    people: int = 4,
    messages_per_person: int = 260,
    end_unix: int = 1_700_000_000,
    spacing_seconds: int = 600,
) -> World:
    """A seeded account: ``people`` private chats with ``messages_per_person`` (± a few) each,
    plus a bot, a deleted account, Saved Messages, a group and a channel (a few messages each).

    Private chats have incoming and outgoing text, every media kind (in the first chat),
    forwards, replies, phone calls and edits; ids grow with time across chats like Telegram's.
    """
    rng = random.Random(seed)
    me = types.User(
        id=ME_ID,
        is_self=True,
        access_hash=rng.getrandbits(62),
        first_name="Olga",
        last_name="Owner",
        username="olga",
        phone=PHONE.lstrip("+"),
    )
    users: dict[int, types.User] = {ME_ID: me}
    names = ["Anna", "Boris", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun"]
    person_ids = []
    for i in range(people):
        uid = 2001 + i
        users[uid] = types.User(
            id=uid,
            access_hash=rng.getrandbits(62),
            first_name=names[i % len(names)],
            last_name=f"P{i}",
            username=f"user{i}" if i % 2 == 0 else None,
        )
        person_ids.append(uid)
    users[3001] = types.User(
        id=3001,
        bot=True,
        bot_info_version=1,
        access_hash=1,
        first_name="Helper",
        username="helperbot",
    )
    users[3002] = types.User(id=3002, deleted=True, access_hash=2)
    chats: dict[int, types.Chat | types.Channel] = {
        4001: types.Chat(4001, "Family", types.ChatPhotoEmpty(), 5, _utc(0), 1),
        4002: types.Channel(
            4002, "News", types.ChatPhotoEmpty(), _utc(0), broadcast=True, access_hash=3
        ),
    }
    world = World(me=me, users=users, chats=chats, history={})

    # One timeline for all chats, so that ids interleave as on a real account.
    plan: list[tuple[int, int]] = []  # (date, chat key)
    for uid in person_ids:
        count = messages_per_person + rng.randrange(0, 7)
        plan += [(end_unix - rng.randrange(count * spacing_seconds), uid) for _ in range(count)]
    for key in (3001, 3002, ME_ID, -4001, -4002):
        plan += [(end_unix - rng.randrange(3600 * 24), key) for _ in range(3)]
    plan.sort()
    samples = media_samples(rng)
    kinds = list(samples)
    first_chat = person_ids[0] if person_ids else None
    for date, key in plan:
        out = rng.random() < 0.45
        text = " ".join(rng.choices(_WORDS, k=rng.randrange(1, 8)))
        extra: dict[str, Any] = {}
        if key > 0 and key in person_ids:
            earlier = world.history.get(key, [])
            if key == first_chat and kinds:
                extra["media"] = samples[kinds.pop(0)]  # every kind once, early in chat one
            elif rng.random() < 0.05:
                extra["media"] = samples[rng.choice(list(samples))]
            if rng.random() < 0.05:
                extra["fwd_from"] = types.MessageFwdHeader(date=_utc(date - 999), from_name="X")
            if earlier and rng.random() < 0.1:
                extra["reply_to"] = types.MessageReplyHeader(reply_to_msg_id=rng.choice(earlier).id)
            if rng.random() < 0.05:
                extra["edit_date"] = _utc(date + 60)
            if earlier and rng.random() < 0.02:
                _add_call(world, key, date, out)
                continue
        world.add_message(key, date=date, out=out, text=text, **extra)
    return world


def _add_call(world: World, key: int, date: int, out: bool) -> None:
    msg_id, world.next_id = world.next_id, world.next_id + 1
    world.history[key].append(
        types.MessageService(
            id=msg_id,
            peer_id=world.peer_of(key),
            date=_utc(date),
            out=out,
            action=types.MessageActionPhoneCall(call_id=msg_id, duration=42),
        )
    )


# -- the server ------------------------------------------------------------------------------


@dataclass
class _Auth:
    """What the server knows about one auth key (one logged-in device, or one trying)."""

    authorized: bool = False
    phone_code_hash: str | None = None
    code_expired: bool = False
    password_pending: bool = False
    srp: tuple[int, int, int] | None = None  # (srp_id, b, B)
    qr_token: bytes | None = None
    qr_expires: int = 0
    qr_accepted: bool = False


class TelegramServer:
    """The server side. Tests inspect ``requests`` (a Counter of request class names),
    ``history_pages`` (``(peer key, [ids])`` per getHistory answer) and inject failures."""

    def __init__(
        self,
        world: World | None = None,
        *,
        password: str | None = None,
        password_hint: str | None = "pet's name",
        qr_ttl_seconds: int = 30,
    ) -> None:
        self.world = world or build_world()
        self.password = password
        self.password_hint = password_hint
        self.qr_ttl_seconds = qr_ttl_seconds
        self.clock_offset_seconds = 0
        """Telegram's clock minus this machine's (negative: the machine's clock is ahead)."""
        self.requests: Counter[str] = Counter()
        self.history_pages: list[tuple[int, list[int]]] = []
        self.checked_ids: list[int] = []
        self.flood_until: dict[str, float] = {}
        """{request class name: time}: every such request is refused with FLOOD_WAIT till then."""
        self.broken_peers: dict[int, str] = {}
        """{peer key: error}: getHistory for that chat always fails so (``PEER_ID_INVALID``)."""
        self.unreachable: BaseException | None = None
        """Raised by every connection attempt (what Telethon raises when Telegram is not there)."""
        """Ids asked for with messages.getMessages."""
        self.auths: dict[int, _Auth] = {}
        self.invalid_phones: set[str] = set()
        # {request class name: [error, …]}: the next such requests fail with these, in order.
        # An error is an RPC error message ("FLOOD_WAIT_30"), an exception to raise as is, or
        # None to answer that request normally.
        self.failures: dict[str, list[str | BaseException | None]] = {}
        self._senders: list[InMemorySender] = []
        self._algo = types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=os.urandom(16), salt2=os.urandom(16), g=SRP_G, p=_pad(SRP_P)
        )
        # The server stores only the verifier v = g^x, never the password.
        self._verifier = (
            pow(SRP_G, int.from_bytes(compute_hash(self._algo, password), "big"), SRP_P)
            if password is not None
            else None
        )

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, client: TelegramClient) -> TelegramClient:
        """Replace the client's network sender with one connected to this server."""
        client._sender = InMemorySender(
            self,
            auth_key=client.session.auth_key,
            auth_key_callback=client._auth_key_callback,
            updates_queue=client._updates_queue,
        )
        return client

    def client_factory(self, settings: Settings) -> ClientFactory:
        """twin's own client factory, with each client attached to this server."""

        def factory(*, session: str | None, receive_updates: bool) -> TelegramClient:
            client = make_client(
                settings=settings, session=session, receive_updates=receive_updates
            )
            return self.attach(client)

        return factory

    def log_in(self, settings: Settings) -> TelegramServer:
        """Log the owner in through twin's real login flow (phone, then code); return self."""

        async def flow() -> None:
            ticket = await login.start_login(
                settings, phone=PHONE, client_factory=self.client_factory(settings)
            )
            await login.submit_code(ticket.login_id, CODE)

        asyncio.run(flow())
        return self

    def harvest(self, settings: Settings, **options: Any) -> HarvestSummary:
        """Run twin's harvest with the stored session against this server (no pauses)."""

        async def go() -> HarvestSummary:
            client = self.client_factory(settings)(
                session=load_session(settings), receive_updates=False
            )
            try:
                return await harvest(settings=settings, client=client, pause_seconds=0, **options)
            finally:
                await client.disconnect()

        return asyncio.run(go())

    def fail_next(self, request_name: str, *errors: str | BaseException | None) -> None:
        """Make the next ``request_name`` requests fail (e.g. ``"GetHistoryRequest"``)."""
        self.failures.setdefault(request_name, []).extend(errors)

    # -- what a second device does -----------------------------------------------------------

    def scan_qr(self, url: str) -> bool:
        """Accept a QR login the way a logged-in phone does; False if the token expired."""
        token = base64.urlsafe_b64decode(url.split("token=", 1)[1] + "==")
        for sender in self._senders:
            auth = self.auths.get(sender.key_id)
            if auth and auth.qr_token == token:
                if auth.qr_expires <= time.time():
                    return False
                auth.qr_accepted = True
                if sender.wants_updates:
                    sender.push_update(
                        types.UpdateShort(types.UpdateLoginToken(), _utc(int(time.time())))
                    )
                return True
        return False

    def expire_codes(self) -> None:
        for auth in self.auths.values():
            auth.code_expired = True

    def is_authorized(self, auth_key: AuthKey) -> bool:
        return self.auths.get(auth_key.key_id, _Auth()).authorized

    # -- request handling ---------------------------------------------------------------------

    def answer(self, sender: InMemorySender, request: TLRequest) -> Any:
        """Unwrap the invoke* wrappers, then answer the inner request (or raise)."""
        sender.wants_updates = True
        while True:
            if isinstance(request, functions.InvokeWithLayerRequest):
                assert request.layer == LAYER
                request = request.query
            elif isinstance(request, functions.InitConnectionRequest):
                request = request.query
            elif isinstance(request, functions.InvokeWithoutUpdatesRequest):
                sender.wants_updates = False
                request = request.query
            else:
                break
        name = type(request).__name__
        self.requests[name] += 1
        auth = self.auths.setdefault(sender.key_id, _Auth())
        if self.flood_until.get(name, 0) > time.time():  # Telegram keeps refusing until then
            left = int(self.flood_until[name] - time.time()) + 1
            raise self.error(420, f"FLOOD_WAIT_{left}", request)
        failure = self.failures[name].pop(0) if self.failures.get(name) else None
        if isinstance(failure, BaseException):
            raise failure
        if failure is not None:
            if failure.startswith("FLOOD_WAIT_"):
                self.flood_until[name] = time.time() + int(failure.rsplit("_", 1)[1])
            raise self.error(420 if failure.startswith("FLOOD") else 400, failure, request)
        handler = getattr(self, "_" + name, None)
        if handler is None:
            raise NotImplementedError(f"the test server does not answer {name}")
        if name not in _WITHOUT_LOGIN and not auth.authorized:
            raise self.error(401, "AUTH_KEY_UNREGISTERED", request)
        return handler(request, auth)

    @staticmethod
    def error(code: int, message: str, request: TLRequest) -> BaseException:
        return rpc_message_to_error(types.RpcError(code, message), request)

    def now(self) -> int:
        """Telegram's clock."""
        return int(time.time()) + self.clock_offset_seconds

    def _GetConfigRequest(self, request: Any, auth: _Auth) -> types.Config:
        now = self.now()
        return types.Config(
            date=_utc(now),
            expires=_utc(now + 3600),
            test_mode=False,
            this_dc=2,
            dc_options=[types.DcOption(id=2, ip_address="149.154.167.51", port=443)],
            dc_txt_domain_name="",
            chat_size_max=200,
            megagroup_size_max=200000,
            forwarded_count_max=100,
            online_update_period_ms=1,
            offline_blur_timeout_ms=1,
            offline_idle_timeout_ms=1,
            online_cloud_timeout_ms=1,
            notify_cloud_delay_ms=1,
            notify_default_delay_ms=1,
            push_chat_period_ms=1,
            push_chat_limit=1,
            edit_time_limit=172800,
            revoke_time_limit=1,
            revoke_pm_time_limit=1,
            rating_e_decay=1,
            stickers_recent_limit=1,
            channels_read_media_period=1,
            call_receive_timeout_ms=1,
            call_ring_timeout_ms=1,
            call_connect_timeout_ms=1,
            call_packet_timeout_ms=1,
            me_url_prefix="https://t.me/",
            caption_length_max=1024,
            message_length_max=4096,
            webfile_dc_id=4,
        )

    def _GetUsersRequest(self, request: Any, auth: _Auth) -> list[types.User]:
        out = []
        for user in request.id:
            if isinstance(user, types.InputUserSelf):
                out.append(self.world.me)
            elif isinstance(user, types.InputUser) and user.user_id in self.world.users:
                out.append(self.world.users[user.user_id])
        return out

    def _GetStateRequest(self, request: Any, auth: _Auth) -> types.updates.State:
        return types.updates.State(pts=1, qts=0, date=_utc(self.now()), seq=1, unread_count=0)

    def _GetDifferenceRequest(self, request: Any, auth: _Auth) -> types.updates.DifferenceEmpty:
        return types.updates.DifferenceEmpty(date=_utc(self.now()), seq=1)

    def _SendCodeRequest(self, request: Any, auth: _Auth) -> types.auth.SentCode:
        phone = "+" + request.phone_number.lstrip("+")
        if phone in self.invalid_phones:
            raise self.error(400, "PHONE_NUMBER_INVALID", request)
        auth.phone_code_hash = os.urandom(8).hex() if phone == PHONE else "unregistered"
        auth.code_expired = False
        return types.auth.SentCode(
            type=types.auth.SentCodeTypeApp(length=len(CODE)), phone_code_hash=auth.phone_code_hash
        )

    def _SignInRequest(self, request: Any, auth: _Auth) -> Any:
        # The code belongs to the auth key that asked for it: any other key sees it expired.
        if auth.phone_code_hash is None or auth.code_expired:
            raise self.error(400, "PHONE_CODE_EXPIRED", request)
        if request.phone_code_hash != auth.phone_code_hash:
            raise self.error(400, "PHONE_CODE_HASH_EMPTY", request)
        if request.phone_code != CODE:
            raise self.error(400, "PHONE_CODE_INVALID", request)
        if auth.phone_code_hash == "unregistered":
            return types.auth.AuthorizationSignUpRequired()
        auth.phone_code_hash = None
        return self._authorize(auth, request)

    def _authorize(self, auth: _Auth, request: Any) -> types.auth.Authorization:
        if self._verifier is not None:
            auth.password_pending = True
            raise self.error(401, "SESSION_PASSWORD_NEEDED", request)
        auth.authorized = True
        return types.auth.Authorization(user=self.world.me)

    def _GetPasswordRequest(self, request: Any, auth: _Auth) -> types.account.Password:
        if self._verifier is None:
            return types.account.Password(
                new_algo=types.PasswordKdfAlgoUnknown(),
                new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
                secure_random=os.urandom(32),
            )
        k = int.from_bytes(_sha256(_pad(SRP_P), _pad(SRP_G)), "big")
        b = int.from_bytes(os.urandom(256), "big")
        big_b = (k * self._verifier + pow(SRP_G, b, SRP_P)) % SRP_P
        srp_id = random.getrandbits(62)
        auth.srp = (srp_id, b, big_b)
        return types.account.Password(
            new_algo=types.PasswordKdfAlgoUnknown(),
            new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
            secure_random=os.urandom(32),
            has_password=True,
            current_algo=self._algo,
            srp_B=_pad(big_b),
            srp_id=srp_id,
            hint=self.password_hint,
        )

    def _CheckPasswordRequest(self, request: Any, auth: _Auth) -> types.auth.Authorization:
        check = request.password
        if not auth.password_pending or auth.srp is None or self._verifier is None:
            raise self.error(400, "PASSWORD_HASH_INVALID", request)
        srp_id, b, big_b = auth.srp
        auth.srp = None  # one try per account.getPassword, as on Telegram
        if check.srp_id != srp_id:
            raise self.error(400, "SRP_ID_INVALID", request)
        # SRP server side: S = (A · v^u)^b, K = H(S), M1 = H(H(p)^H(g), H(s1), H(s2), A, B, K).
        big_a = int.from_bytes(check.A, "big")
        u = int.from_bytes(_sha256(_pad(big_a), _pad(big_b)), "big")
        s = pow(big_a * pow(self._verifier, u, SRP_P) % SRP_P, b, SRP_P)
        h_pg = bytes(x ^ y for x, y in zip(_sha256(_pad(SRP_P)), _sha256(_pad(SRP_G)), strict=True))
        m1 = _sha256(
            h_pg,
            _sha256(self._algo.salt1),
            _sha256(self._algo.salt2),
            _pad(big_a),
            _pad(big_b),
            _sha256(_pad(s)),
        )
        if m1 != check.M1:
            raise self.error(400, "PASSWORD_HASH_INVALID", request)
        auth.password_pending = False
        auth.authorized = True
        return types.auth.Authorization(user=self.world.me)

    def _ExportLoginTokenRequest(self, request: Any, auth: _Auth) -> Any:
        if auth.qr_accepted:
            auth.qr_accepted = False
            auth.qr_token = None
            return types.auth.LoginTokenSuccess(self._authorize(auth, request))
        auth.qr_token = os.urandom(32)
        auth.qr_expires = int(time.time()) + self.qr_ttl_seconds
        return types.auth.LoginToken(expires=_utc(auth.qr_expires), token=auth.qr_token)

    def _LogOutRequest(self, request: Any, auth: _Auth) -> types.auth.LoggedOut:
        auth.authorized = False
        return types.auth.LoggedOut()

    def _GetDialogsRequest(self, request: Any, auth: _Auth) -> Any:
        world = self.world
        keyed = sorted(world.history, key=lambda key: -world.history[key][-1].id)
        if request.offset_id:
            keyed = [k for k in keyed if world.history[k][-1].id < request.offset_id]
        page = keyed[: request.limit]
        dialogs = [
            world.dialog(
                key, pts=1 if key < 0 and isinstance(world.chats[-key], types.Channel) else None
            )
            for key in page
        ]
        messages = [world.history[key][-1] for key in page]
        users = list(world.users.values())
        chats = list(world.chats.values())
        if len(page) == len(world.history):
            return types.messages.Dialogs(dialogs, messages, chats, users)
        return types.messages.DialogsSlice(len(world.history), dialogs, messages, chats, users)

    def _GetHistoryRequest(self, request: Any, auth: _Auth) -> Any:
        key = self._peer_key(request.peer, request)
        if key in self.broken_peers:
            raise self.error(400, self.broken_peers[key], request)
        newest_first = [
            m
            for m in reversed(self.world.history.get(key, []))
            if (not request.min_id or m.id > request.min_id)
            and (not request.max_id or m.id < request.max_id)
        ]
        # core.telegram.org/api/offsets: the window starts where messages older than
        # offset_id (or offset_date) begin, moved by add_offset; limit sets its length.
        start = 0
        if request.offset_id:
            start = next(
                (i for i, m in enumerate(newest_first) if m.id < request.offset_id),
                len(newest_first),
            )
        elif request.offset_date:
            start = next(
                (i for i, m in enumerate(newest_first) if m.date < request.offset_date),
                len(newest_first),
            )
        # The window [start + add_offset, … + limit) is clipped to the history, not shifted:
        # asking past the newest message returns fewer messages (reverse paging relies on it).
        low = start + request.add_offset
        high = low + min(max(request.limit, 0), 100)
        start = min(max(low, 0), len(newest_first))
        page = newest_first[start : min(max(high, 0), len(newest_first))]
        self.history_pages.append((key, [m.id for m in page]))
        users = [self.world.me] + ([self.world.users[key]] if key in self.world.users else [])
        chats = [self.world.chats[-key]] if key < 0 else []
        if len(page) == len(newest_first):
            return types.messages.Messages(page, [], chats, users)
        return types.messages.MessagesSlice(
            len(newest_first), page, [], chats, users, offset_id_offset=start
        )

    def _GetMessagesRequest(self, request: Any, auth: _Auth) -> Any:
        # Private chats and basic groups share one id space: ids are looked up account-wide,
        # and an id that no longer exists answers messageEmpty in its place.
        found = [self.world.message(i.id) for i in request.id]
        messages = [
            m if m is not None else types.MessageEmpty(i.id, peer_id=None)
            for i, m in zip(request.id, found, strict=True)
        ]
        self.checked_ids += [i.id for i in request.id]
        users = list(self.world.users.values())
        return types.messages.Messages(messages, [], list(self.world.chats.values()), users)

    def _peer_key(self, peer: Any, request: Any) -> int:
        if isinstance(peer, types.InputPeerSelf):
            return ME_ID
        if isinstance(peer, types.InputPeerUser):
            user = self.world.users.get(peer.user_id)
            if user is not None and user.access_hash == peer.access_hash:
                return peer.user_id
        if isinstance(peer, types.InputPeerChat) and peer.chat_id in self.world.chats:
            return -peer.chat_id
        if isinstance(peer, types.InputPeerChannel) and peer.channel_id in self.world.chats:
            return -peer.channel_id
        raise self.error(400, "PEER_ID_INVALID", request)


# Methods Telegram answers before login.
_WITHOUT_LOGIN = {
    "GetConfigRequest",
    "SendCodeRequest",
    "SignInRequest",
    "GetPasswordRequest",
    "CheckPasswordRequest",
    "ExportLoginTokenRequest",
    "ImportLoginTokenRequest",
}


def _encode(result: Any) -> bytes:
    """The answer as it would travel: a TL object, a Vector of them, or a Bool."""
    if isinstance(result, bool):
        return struct.pack("<I", 0x997275B5 if result else 0xBC799737)  # boolTrue / boolFalse
    if isinstance(result, list):
        return struct.pack("<Ii", 0x1CB5C415, len(result)) + b"".join(bytes(x) for x in result)
    assert isinstance(result, TLObject)
    return bytes(result)


class InMemorySender:
    """Stands in for Telethon's MTProtoSender (see telethon/network/mtprotosender.py)."""

    def __init__(
        self,
        server: TelegramServer,
        *,
        auth_key: AuthKey | None,
        auth_key_callback: Callable[[AuthKey], Any],
        updates_queue: asyncio.Queue[Any],
    ) -> None:
        self.server = server
        self.auth_key = auth_key or AuthKey(None)
        self._auth_key_callback = auth_key_callback
        self._updates_queue = updates_queue
        self._connection: Any = None
        self._connected = False
        self._disconnected_future: asyncio.Future[None] | None = None
        self.wants_updates = False
        server._senders.append(self)

    @property
    def key_id(self) -> int:
        return self.auth_key.key_id

    async def connect(self, connection: Any) -> bool:
        if self._connected:
            return False
        if self.server.unreachable is not None:
            raise self.server.unreachable
        self._connection = connection
        if not self.auth_key.key:
            # Stands for the Diffie-Hellman exchange that creates a key on first contact.
            self.auth_key.key = os.urandom(256)
            await self._auth_key_callback(self.auth_key)
        self._connected = True
        self._disconnected_future = asyncio.get_running_loop().create_future()
        return True

    def is_connected(self) -> bool:
        return self._connected

    def _transport_connected(self) -> bool:
        return self._connected

    async def disconnect(self) -> None:
        self._connected = False
        if self._disconnected_future and not self._disconnected_future.done():
            self._disconnected_future.set_result(None)

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected_future is None:
            self._disconnected_future = asyncio.get_running_loop().create_future()
            self._disconnected_future.set_result(None)
        return asyncio.shield(self._disconnected_future)

    def _keepalive_ping(self, rnd_id: int) -> None:
        pass

    def send(self, request: Any, ordered: bool = False) -> Any:
        if not self._connected:
            raise ConnectionError("Cannot send requests while disconnected")
        if isinstance(request, list):
            return [self._submit(r) for r in request]
        return self._submit(request)

    def _submit(self, request: TLRequest) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        wire = bytes(request)  # serialized now, as the send loop would
        asyncio.get_running_loop().call_soon(self._deliver, wire, future)
        return future

    def _deliver(self, wire: bytes, future: asyncio.Future[Any]) -> None:
        if future.done():
            return
        request = BinaryReader(wire).tgread_object()
        try:
            result = self.server.answer(self, request)
            inner = request
            while hasattr(inner, "query"):
                inner = inner.query
            future.set_result(inner.read_result(BinaryReader(_encode(result))))
        except BaseException as exc:
            future.set_exception(exc)

    def push_update(self, update: TLObject) -> None:
        self._updates_queue.put_nowait(BinaryReader(bytes(update)).tgread_object())


def with_api_credentials(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings once (made-up) Telegram API credentials are in the environment."""
    from twin.config import get_settings

    monkeypatch.setenv("TWIN_API_ID", "1234567")
    monkeypatch.setenv("TWIN_API_HASH", "0f" * 16)
    get_settings.cache_clear()
    return get_settings()

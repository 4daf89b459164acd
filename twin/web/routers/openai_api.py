"""An OpenAI-compatible API, so chat clients and scripts can talk to the twin:
``POST /v1/chat/completions`` (streamed or not) and ``GET /v1/models``.

Authorized by ``Authorization: Bearer <token>`` with the token made on the Settings page (the
owner's browser session works too). Each finished training run is a model, its id the run id;
``model`` names one (``twin`` or an unknown-to-OpenAI default picks the newest).

How messages become the twin's prompt: ``user`` messages are the other person's turns and
``assistant`` messages are mine; ``system`` (and ``developer``) messages are ignored, because
the twin was trained on chats, not on instructions. The other person's name (the speaker tag
the twin sees) is the ``name`` field of the last user message that has one, else the default
set on the Settings page (``Friend`` until changed). ``top_k`` is accepted as an extension;
``stop``, ``n`` > 1, tools and logprobs are not supported. Errors come in OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from twin import runs
from twin.config import Settings
from twin.errors import ChatError
from twin.prepare.format import Turn, clean_name
from twin.web.deps import SettingsDep, StateDep, WebState
from twin.web.model import api_peer_name, load_run_twin, my_name
from twin.web.streaming import event_stream, iterate_in_thread, sse

router = APIRouter(prefix="/v1")

DEFAULT_MODEL = "twin"
"""Names the newest finished run."""


class ContentPart(BaseModel):
    """One part of a message's content (only text parts carry anything the twin reads)."""

    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=100)

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class CompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request that the twin honours."""

    model_config = ConfigDict(extra="ignore")
    model: str = DEFAULT_MODEL
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # torch.Generator.manual_seed's range: anything else would fail deep in sampling.
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    n: int = Field(default=1, ge=1, le=1)


class OpenAIError(Exception):
    """An error answered in OpenAI's JSON shape.

    Args:
        status_code: the HTTP status.
        message: what went wrong and how to fix it.
        type: OpenAI's error type (``invalid_request_error``, ``authentication_error``, …).
        code: OpenAI's error code, if any (``model_not_found``, ``invalid_api_key``).
        param: the request field at fault, if any.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code, self.message, self.type, self.code, self.param = (
            status_code,
            message,
            type,
            code,
            param,
        )


def openai_error_response(exc: OpenAIError, headers: dict[str, str] | None = None) -> Response:
    """The JSON response for ``exc``.

    Args:
        exc: the error.
        headers: extra response headers (e.g. ``WWW-Authenticate``).
    """
    body = {
        "error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    }
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def messages_to_turns(
    messages: list[ChatMessage], *, me: str, default_peer: str
) -> tuple[list[Turn], str]:
    """The conversation as prompt turns, and the other person's name (see the module doc).

    Args:
        messages: the request's messages, oldest first.
        me: my display name (the assistant).
        default_peer: the other person's name when no user message names them.
    """
    named = [m.name for m in messages if m.role == "user" and m.name and m.name.strip()]
    peer = clean_name(named[-1]) if named else default_peer
    turns = [
        Turn(speaker=me if m.role == "assistant" else peer, text=m.text, mine=m.role == "assistant")
        for m in messages
        if m.role in ("user", "assistant")
    ]
    if not turns:
        raise OpenAIError(
            400,
            "The messages hold no user or assistant message: there is nothing to reply to.",
            param="messages",
        )
    return turns, peer


def finished_runs(settings: Settings) -> list[tuple[str, Path]]:
    """``(run_id, run_dir)`` of runs that can answer (`twin.runs.finished_runs`)."""
    return [(run_dir.name, run_dir) for run_dir in runs.finished_runs(settings)]


def pick_run(settings: Settings, model: str) -> tuple[str, Path]:
    """The run a request's ``model`` names (``twin``: the newest), or a 404 in OpenAI's shape.

    Args:
        settings: whose runs.
        model: the request's model.
    """
    runs = finished_runs(settings)
    if not runs:
        raise OpenAIError(
            404,
            "No training run has finished yet: there is no model. Train one in the web app "
            "or with `twin train`.",
            code="model_not_found",
            param="model",
        )
    if model in ("", DEFAULT_MODEL):
        return runs[0]
    for run_id, run_dir in runs:
        if run_id == model:
            return run_id, run_dir
    known = ", ".join([DEFAULT_MODEL] + [run_id for run_id, _ in runs])
    raise OpenAIError(
        404, f"The model {model!r} does not exist. Models: {known}.", code="model_not_found",
        param="model",
    )  # fmt: skip


@router.get("/models")
def list_models(settings: SettingsDep) -> dict[str, Any]:
    """Finished runs as models, newest first, led by ``twin``: the alias of the newest."""
    models = [
        {
            "id": run_id,
            "object": "model",
            "created": int((run_dir / runs.RUN_RECORD).stat().st_mtime),
            "owned_by": "twin",
        }
        for run_id, run_dir in finished_runs(settings)
    ]
    alias = [{**models[0], "id": "twin"}] if models else []
    return {"object": "list", "data": alias + models}


def _chunk(base: dict[str, Any], delta: dict[str, str], finish_reason: str | None) -> str:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return sse({**base, "object": "chat.completion.chunk", "choices": [choice]})


@router.post("/chat/completions")
def chat_completions(
    body: CompletionRequest,
    state: StateDep,
    me: Annotated[str, Depends(my_name)],
) -> Response:
    """A reply in my voice to the conversation in ``messages``."""
    from twin.chat.generate import (
        DEFAULT_MAX_NEW_TOKENS,
        DEFAULT_TEMPERATURE,
        DEFAULT_TOP_K,
        DEFAULT_TOP_P,
    )

    settings = state.settings
    run_id, run_dir = pick_run(settings, body.model)
    turns, peer = messages_to_turns(body.messages, me=me, default_peer=api_peer_name(settings))
    twin = _load(state, run_dir)
    max_new_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_NEW_TOKENS
    try:
        prompt_tokens = len(
            twin.prompt_ids(context=turns, me=me, peer=peer, max_new_tokens=max_new_tokens)
        )
        pieces = twin.stream_reply(
            context=turns,
            me=me,
            peer=peer,
            temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
            top_k=body.top_k or DEFAULT_TOP_K,
            top_p=body.top_p or DEFAULT_TOP_P,
            max_new_tokens=max_new_tokens,
            seed=body.seed,
        )
    except ChatError as exc:
        raise OpenAIError(400, f"{exc.message} {exc.hint or ''}".strip()) from exc
    base = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": run_id}

    if body.stream:

        async def chunks() -> AsyncIterator[str]:
            yield _chunk(base, {"role": "assistant", "content": ""}, None)
            async for piece in iterate_in_thread(pieces):
                yield _chunk(base, {"content": piece}, None)
            yield _chunk(base, {}, "stop")
            yield "data: [DONE]\n\n"

        return event_stream(chunks())

    text = "".join(pieces)  # this route runs in a worker thread: blocking is fine
    completion_tokens = len(twin.tokenizer.encode(text)) if text else 0
    message = {"role": "assistant", "content": text, "refusal": None}
    return JSONResponse(
        {
            **base,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def _load(state: WebState, run_dir: Path) -> Any:
    try:
        return load_run_twin(state, run_dir)
    except ChatError as exc:
        raise OpenAIError(
            500, f"{exc.message} {exc.hint or ''}".strip(), type="server_error"
        ) from exc

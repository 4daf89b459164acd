"""Replies from a remote OpenAI-compatible server (vLLM, llama.cpp's server, Ollama) instead of
the local model, for the web chat, the game and twin's own ``/v1`` API.

Set ``TWIN_REMOTE_URL`` (e.g. ``http://gpu-box:8000/v1``), optionally ``TWIN_REMOTE_API_KEY``
and ``TWIN_REMOTE_MODEL`` (the served model name, default ``twin``). The server should serve
the run's export (``twin export RUN --format hf``). twin renders the prompt itself, exactly as
for the local model (same format, same dropping of the oldest turns to fit the context), and
sends it to ``/completions`` with the stop sequences that end my turn; the stream is cut at
those sequences here too, in case the server ignores ``stop``. Only the run's tokenizer is
loaded locally (to count and fit tokens), never its weights.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import torch
from litgpt.config import Config
from litgpt.tokenizer import Tokenizer

from twin.basemodel.checkpoint import load_tokenizer
from twin.chat.generate import MAX_CONTEXT_TOKENS, Twin
from twin.chat.stops import reply_pieces
from twin.config import Settings
from twin.errors import ChatError
from twin.prepare.format import Turn, stop_sequences
from twin.runs import load_run

TIMEOUT = httpx.Timeout(10.0, read=300.0)
REMOTE_HINT = "Check TWIN_REMOTE_URL and TWIN_REMOTE_API_KEY (unset TWIN_REMOTE_URL: local model)."


class RemoteClient:
    """A minimal streaming client for OpenAI's ``/completions`` endpoint.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        api_key: sent as ``Authorization: Bearer …`` when given.
        transport: an httpx transport (tests); default: the network.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, transport: Any = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT, transport=transport
        )

    def stream_completion(self, *, prompt: str, **params: Any) -> Iterator[str]:
        """Text pieces of a streamed completion of ``prompt``.

        Args:
            prompt: the full prompt.
            params: other request fields (``model``, ``max_tokens``, ``temperature``, ``stop``…).
        """
        body = {**{k: v for k, v in params.items() if v is not None}, "prompt": prompt}
        try:
            with self._client.stream("POST", "/completions", json={**body, "stream": True}) as r:
                if r.status_code != 200:
                    r.read()
                    raise ChatError(
                        f"The remote model at {self.base_url} answered {r.status_code}: "
                        f"{_error_message(r)}",
                        hint=REMOTE_HINT,
                    )
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        return
                    choices = json.loads(data).get("choices") or [{}]
                    if text := choices[0].get("text"):
                        yield text
        except httpx.HTTPError as exc:
            raise ChatError(
                f"Cannot reach the remote model at {self.base_url} ({exc.__class__.__name__}: "
                f"{exc}).",
                hint=REMOTE_HINT,
            ) from exc


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        return str(error.get("message") if isinstance(error, dict) else error or response.text)
    except ValueError:
        return response.text[:200]


class RemoteTwin:
    """Answers like `twin.chat.generate.Twin` (same ``stream_reply`` and ``prompt_ids``), from a
    remote server.

    Args:
        client: the server's client.
        model: the served model name.
        tokenizer: the run's tokenizer (to fit the prompt and count tokens).
        context_length: tokens the served model accepts.
        name: what to call this model in reports (the run id).
    """

    def __init__(
        self,
        *,
        client: RemoteClient,
        model: str,
        tokenizer: Tokenizer,
        context_length: int,
        name: str,
    ) -> None:
        self.client, self.model, self.tokenizer = client, model, tokenizer
        self.context_length, self.name = context_length, name

    def prefill_tokens(self) -> int | None:
        """The server handles long prompts itself: no single-pass limit here."""
        return None

    def prompt_ids(
        self, *, context: Sequence[Turn] | str, me: str, peer: str, max_new_tokens: int
    ) -> torch.Tensor:
        """The prompt's token ids, dropping the oldest turns until the reply fits the context.

        Args:
            context: the conversation so far (turns, or a rendered context).
            me: my display name.
            peer: the other person's display name.
            max_new_tokens: room to keep for the reply.
        """
        # The local model's fitting uses only `tokenizer` and `context_length`: one code path.
        return Twin.prompt_ids(
            self,  # type: ignore[arg-type]
            context=context,
            me=me,
            peer=peer,
            max_new_tokens=max_new_tokens,
        )

    def stream_reply(
        self,
        *,
        context: Sequence[Turn] | str,
        me: str,
        peer: str,
        temperature: float = 0.8,
        top_k: int | None = 50,
        top_p: float = 0.9,
        max_new_tokens: int = 128,
        seed: int | None = None,
    ) -> Iterator[str]:
        """My next message from the remote model, piece by piece (see `Twin.stream_reply`).

        Args:
            context: the conversation so far, oldest first.
            me: my display name.
            peer: the other person's display name.
            temperature: randomness; 0 is greedy.
            top_k: sample among the k most likely tokens (sent as vLLM's ``top_k``).
            top_p: nucleus sampling.
            max_new_tokens: the longest reply, in tokens.
            seed: makes the reply reproducible where the server supports it.
        """
        ids = self.prompt_ids(context=context, me=me, peer=peer, max_new_tokens=max_new_tokens)
        stops = stop_sequences(me=me, peer=peer)
        pieces = self.client.stream_completion(
            prompt=self.tokenizer.decode(ids),
            model=self.model,
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=stops,
        )

        # The first piece is awaited here, so an unreachable server or a refused request
        # raises `ChatError` before the caller starts answering (as `Twin` checks its input).
        first = next(pieces, "")

        def cut() -> Iterator[str]:
            try:
                yield from reply_pieces(itertools.chain([first], pieces), me=me, peer=peer)
            finally:
                pieces.close()  # a reply cut at a stop ends the server's stream too

        return cut()


def remote_twin(*, settings: Settings, run_dir: Path) -> RemoteTwin | None:
    """The remote model for ``run_dir`` when ``TWIN_REMOTE_URL`` is set, else None (local).

    Args:
        settings: twin's settings (``remote_url``, ``remote_api_key``, ``remote_model``).
        run_dir: the run whose tokenizer fits the prompts.
    """
    if not settings.remote_url:
        return None
    record = load_run(run_dir)
    hint = (
        "The remote model still needs the run's base model dir here for its tokenizer and "
        "config (not its weights)."
    )
    tokenizer = load_tokenizer(record.base_model_dir, error=ChatError, hint=hint)
    try:
        block_size = Config.from_file(record.base_model_dir / "model_config.yaml").block_size
    except (OSError, ValueError, KeyError) as exc:
        raise ChatError(
            f"The config of {record.base_model_dir} cannot be read ({exc!r}).", hint=hint
        ) from exc
    return RemoteTwin(
        client=RemoteClient(settings.remote_url, api_key=settings.remote_api_key),
        model=settings.remote_model,
        tokenizer=tokenizer,
        context_length=min(block_size, MAX_CONTEXT_TOKENS),
        name=record.run_id,
    )

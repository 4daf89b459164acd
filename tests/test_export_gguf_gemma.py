"""``twin export --format gguf`` of a Gemma 3 twin: llama.cpp's ``gemma3`` layout, read back.

Shown without llama.cpp:

* structure: the export of Gemma 3 270M has the metadata keys, tensor names and shapes, token
  list and token types of the model package's GGUF, which llama.cpp's own converter made;
* round trip: twin's own GGUF → litgpt converter (the one that builds the base model) reads the
  export back into a model with the merged twin's logits and greedy tokens;
* tokenizer: the file's vocabulary splits a multilingual corpus into the checkpoint's ids, both
  through twin's converter and through llama.cpp's SentencePiece algorithm (written here).

Tolerances, max |Δ| of the logits against the fp32 merged twin (measured in brackets): tiny
model f32 1e-4 (0.0), f16 0.05 (0.029), q8_0 1.0 (0.82); Gemma 3 270M, whose logits span ±28,
f16 0.25 (0.084), q8_0 3.0 (1.82). The greedy tokens are the same, except for q8_0 on 270M:
its greedy continuation leaves the twin's at token 12 of 16 (the first token is asserted).
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from litgpt.model import GPT
from test_export import MESSAGES, _tiny_gemma3, finished_run, twin_prompt
from test_gemma import CORPUS
from test_gemma import gguf_dir as gguf_dir  # the fixture: the package's GGUF, joined once
from tokenizers import Tokenizer, models, normalizers, trainers

from twin.basemodel.gguf_convert import (
    build_tokenizer,
    litgpt_config,
    litgpt_state_dict,
    vocabulary,
)
from twin.chat.generate import Twin
from twin.chat.load import load_twin
from twin.config import Settings
from twin.export.gguf_file import GGUF_FILE
from twin.export.run import export_run
from twin.export.template import chat_template
from twin.runs import LoraSettings

GREEDY_TOKENS = 16
TINY_TOLERANCE = {"f32": 1e-4, "f16": 0.05, "q8_0": 1.0}
REAL_TOLERANCE = {"f16": 0.25, "q8_0": 3.0}
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
# As in Gemma: newline runs and space runs are user-defined tokens, matched whole.
USER_DEFINED = ["\n", "\n\n", *(" " * n for n in range(2, 9))]
TINY_VOCAB, TINY_ROWS = 500, 512  # the embedding is padded past the tokenizer


def spm_tokenizer_dir(out_dir: Path) -> Path:
    """Tokenizer files shaped like the Gemma checkpoint's (SentencePiece-style BPE with byte
    fallback, built by twin's converter from a vocabulary), with a small vocabulary."""
    trained = Tokenizer(models.BPE())
    trained.normalizer = normalizers.Replace(" ", "▁")
    size = TINY_VOCAB - len(SPECIALS) - len(USER_DEFINED) - 256
    trained.train_from_iterator(
        CORPUS * 20, trainers.BpeTrainer(vocab_size=size + 40, show_progress=False)
    )
    by_rank = sorted(trained.get_vocab().items(), key=lambda item: item[1])  # chars, then merges
    # As in Gemma's vocabulary, no piece holds a run of spaces or a newline: those are the
    # user-defined tokens'.
    pieces = [p for p, _ in by_rank if "▁▁" not in p and "\n" not in p][:size]
    tokens = [*SPECIALS, *USER_DEFINED, *(f"<0x{b:02X}>" for b in range(256)), *pieces]
    types = [3] * len(SPECIALS) + [4] * len(USER_DEFINED) + [6] * 256 + [1] * len(pieces)
    assert len(tokens) == TINY_VOCAB
    out_dir.mkdir(parents=True)
    build_tokenizer(tokens, types).save(str(out_dir / "tokenizer.json"))
    gemma_config = {"tokenizer_class": "GemmaTokenizer", "add_bos_token": True,
                    "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                    "unk_token": "<unk>"}  # fmt: skip
    (out_dir / "tokenizer_config.json").write_text(json.dumps(gemma_config))
    ids = {"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}
    (out_dir / "generation_config.json").write_text(json.dumps(ids))
    return out_dir


def read_back(path: Path) -> tuple[GPT, gguf.GGUFReader]:
    """The exported GGUF as twin's converter builds a base model from it (strict load)."""
    reader = gguf.GGUFReader(path)
    # twin's converter reads tied heads only (as Gemma ships); a head trained with LoRA is its
    # own tensor, read here.
    head = [t for t in reader.tensors if t.name == "output.weight"]
    reader.tensors = [t for t in reader.tensors if t.name != "output.weight"]
    state = litgpt_state_dict(reader)
    for tensor in head:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        state["lm_head.weight"] = torch.from_numpy(values).reshape(state["lm_head.weight"].shape)
    model = GPT(litgpt_config(reader))
    model.load_state_dict(state, strict=True)
    return model.eval(), reader


def greedy(model: GPT, ids: list[int], steps: int) -> list[int]:
    """Greedy continuation, the whole sequence recomputed each step (no cache to differ)."""
    out: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            out.append(int(GPT.forward(model, torch.tensor([ids + out]))[0, -1].argmax()))
    return out


def spm_encode(reader: gguf.GGUFReader, text: str) -> list[int]:
    """llama.cpp's SentencePiece tokenizer (src/llama-vocab.cpp, ``llm_tokenizer_spm``) from the
    file's fields: user-defined and control tokens are cut out of the raw text first, longest
    first; each other piece has its spaces spelled ``▁`` and its adjacent symbols merged,
    highest-scoring joined token first (leftmost on ties); what is left unknown becomes bytes."""
    tokens, types = vocabulary(reader)
    scores = [float(s) for s in reader.fields["tokenizer.ggml.scores"].contents()]
    ids = {token: i for i, token in enumerate(tokens)}
    whole = sorted((t for t, k in zip(tokens, types, strict=True) if k in (3, 4)), key=len)
    pieces: list[str | int] = [text]
    for token in reversed(whole):
        split: list[str | int] = []
        for piece in pieces:
            if isinstance(piece, int):
                split.append(piece)
                continue
            for index, part in enumerate(piece.split(token)):
                split.extend([ids[token]] if index else [])
                split.extend([part] if part else [])
        pieces = split
    out = [ids["<bos>"]] if reader.fields["tokenizer.ggml.add_bos_token"].contents() else []
    for piece in pieces:
        if isinstance(piece, int):
            out.append(piece)
            continue
        symbols = list(piece.replace(" ", "▁"))
        while True:
            pairs = [(scores[ids[a + b]], -i) for i, (a, b) in
                     enumerate(pairwise(symbols)) if a + b in ids]  # fmt: skip
            if not pairs:
                break
            i = -max(pairs)[1]
            symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
        for symbol in symbols:
            if symbol in ids:
                out.append(ids[symbol])
            else:
                out.extend(ids[f"<0x{b:02X}>"] for b in symbol.encode())
    return out


def assert_tokenizer_round_trips(twin: Twin, reader: gguf.GGUFReader) -> None:
    rebuilt = build_tokenizer(*vocabulary(reader))
    for text in CORPUS:
        ours = twin.tokenizer.encode(text).tolist()
        assert [2, *rebuilt.encode(text).ids] == ours, text
        assert spm_encode(reader, text) == ours, text


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Gemma-3-shaped model as twin's converter expects Gemma 3 (six layers, the sixth
    global; head size 256, the attention scale llama.cpp assumes), with a small vocabulary."""
    root = tmp_path_factory.mktemp("gguf-gemma")
    tokenizer_dir = spm_tokenizer_dir(root / "tokenizer")
    return _tiny_gemma3(
        root / "base", tokenizer_dir, n_layer=6, head_size=256, attention_scores_scalar=256,
        sliding_window_indices=[1, 1, 1, 1, 1, 0], rope_indices=[1, 1, 1, 1, 1, 0],
        vocab_size=TINY_VOCAB, padded_vocab_size=TINY_ROWS, block_size=1024,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tiny_gemma: Path) -> Path:
    # LoRA on the head too: the merged head differs from the embedding and is written apart.
    return finished_run(tiny_gemma.parent / "data" / "runs", "20240101-000000", tiny_gemma)


def _export(run_dir: Path, quant: str) -> Path:
    settings = Settings(data_dir=run_dir.parent.parent)
    out = export_run(settings=settings, run=run_dir.name, fmt="gguf", quant=quant, me="Me")
    return out / GGUF_FILE


@pytest.mark.parametrize("quant", ["f32", "f16", "q8_0"])
def test_tiny_gemma_gguf_reads_back_as_the_twin(tiny_run: Path, quant: str) -> None:
    twin = load_twin(run_dir=tiny_run)
    model, reader = read_back(_export(tiny_run, quant))
    assert {t.name: t.tensor_type.name for t in reader.tensors}["blk.0.attn_q.weight"] == (
        quant.upper()
    )
    prompt = twin_prompt(MESSAGES, me="Me", default_peer="Friend")
    ids = twin.tokenizer.encode(prompt).tolist()
    assert len(ids) > 16  # longer than the sliding window: local and global layers both count
    with torch.no_grad():
        ours = GPT.forward(twin.model, torch.tensor([ids]))[0, :, :TINY_VOCAB]
        theirs = model(torch.tensor([ids]))[0, :, :TINY_VOCAB]
    assert (ours - theirs).abs().max().item() < TINY_TOLERANCE[quant]
    assert greedy(model, ids, GREEDY_TOKENS) == greedy(twin.model, ids, GREEDY_TOKENS)
    assert reader.fields["tokenizer.chat_template"].contents() == chat_template(
        me="Me", peer="Friend"
    )
    assert_tokenizer_round_trips(twin, reader)


def test_gemma_norms_are_stored_as_llama_cpp_reads_them(tiny_run: Path, tiny_gemma: Path) -> None:
    # llama.cpp multiplies by the stored norm weight; litgpt by 1 + its weight.
    reader = gguf.GGUFReader(_export(tiny_run, "f32"))
    stored = {t.name: np.asarray(t.data) for t in reader.tensors}
    base = torch.load(tiny_gemma / "lit_model.pth", weights_only=True)
    for ours, theirs in (("transformer.h.0.norm_1", "blk.0.attn_norm"),
                         ("transformer.h.5.attn.norm_k", "blk.5.attn_k_norm"),
                         ("transformer.ln_f", "output_norm")):  # fmt: skip
        expected = base[f"{ours}.weight"].numpy() + 1.0
        np.testing.assert_allclose(stored[f"{theirs}.weight"], expected, rtol=0, atol=1e-6)


def test_a_gemma_off_llama_cpps_defaults_says_so_in_the_file(tmp_path: Path) -> None:
    # llama.cpp assumes every sixth layer global and a local RoPE base of 10000 unless the file
    # says otherwise: a model that differs carries the keys that say it.
    base = _tiny_gemma3(
        tmp_path / "base", spm_tokenizer_dir(tmp_path / "tokenizer"), vocab_size=TINY_VOCAB,
        rope_local_base_freq=20000, block_size=1024,
    )  # fmt: skip
    run_dir = finished_run(tmp_path / "data" / "runs", "20240101-000000", base)
    fields = gguf.GGUFReader(_export(run_dir, "f32")).fields
    assert fields["gemma3.attention.sliding_window_pattern"].contents() == [True, True, False]
    assert fields["gemma3.rope.freq_base_swa"].contents() == 20000.0
    assert fields["gemma3.attention.sliding_window"].contents() == 16


@pytest.mark.xdist_group("gemma")
@pytest.mark.timeout(1800)
def test_real_gemma_gguf_has_llama_cpps_structure_and_reads_back(
    gemma: Path, gguf_dir: Path, tmp_path: Path
) -> None:
    from twin.basemodel.gemma import GGUF_NAME

    # Made by llama.cpp's own converter: the reference for names, shapes and metadata keys.
    reference = gguf.GGUFReader(gguf_dir / GGUF_NAME)
    # twin's default LoRA: attention only, so the head stays tied to the embedding, as shipped;
    # small enough to keep the model's language (a broken model's near-tied scores would let
    # q8_0's rounding pick other greedy tokens).
    lora = LoraSettings(r=4, alpha=8, dropout=0.0)
    run_dir = finished_run(
        tmp_path / "data" / "runs", "20240101-000000", gemma, lora=lora, lora_b_std=0.02
    )
    twin = load_twin(run_dir=run_dir)
    prompt = twin_prompt(MESSAGES, me="Me", default_peer="Friend")
    ids = twin.tokenizer.encode(prompt).tolist()
    with torch.no_grad():
        ours = GPT.forward(twin.model, torch.tensor([ids]))[0]
    ours_greedy = greedy(twin.model, ids, GREEDY_TOKENS)
    for quant in ("f16", "q8_0"):
        model, reader = read_back(_export(run_dir, quant))
        assert set(reader.fields) - set(reference.fields) == {"tokenizer.chat_template"}
        assert set(reference.fields) <= set(reader.fields)
        shapes = {t.name: t.shape.tolist() for t in reader.tensors}
        assert shapes == {t.name: t.shape.tolist() for t in reference.tensors}
        for key in ("tokens", "token_type", "bos_token_id", "eos_token_id", "padding_token_id",
                    "unknown_token_id", "add_bos_token", "add_space_prefix"):  # fmt: skip
            field = f"tokenizer.ggml.{key}"
            assert reader.fields[field].contents() == reference.fields[field].contents(), key
        for key in reference.fields:
            if key.startswith("gemma3."):
                assert reader.fields[key].contents() == reference.fields[key].contents(), key
        with torch.no_grad():
            theirs = model(torch.tensor([ids]))[0]
        assert (ours - theirs).abs().max().item() < REAL_TOLERANCE[quant], quant
        # q8_0's rounding moves scores by ~0.1 on average: measured, its greedy tokens left
        # f16's at token 12 of 16; the reply's first token is asserted.
        steps = GREEDY_TOKENS if quant == "f16" else 1
        assert greedy(model, ids, steps) == ours_greedy[:steps], quant
        del model
    assert_tokenizer_round_trips(twin, reader)


def test_llama_cpp_decodes_the_gemma_gguf_like_the_twin(tiny_run: Path) -> None:
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (it builds llama.cpp from source)"
    )
    twin = load_twin(run_dir=tiny_run)
    llm = llama_cpp.Llama(model_path=str(_export(tiny_run, "f16")), n_ctx=1024, verbose=False)
    prompt = twin_prompt(MESSAGES, me="Me", default_peer="Friend")
    ids = twin.tokenizer.encode(prompt).tolist()
    assert llm.tokenize(prompt.encode(), add_bos=True, special=True) == ids
    theirs: list[int] = []
    for token in llm.generate(ids, temp=0.0, top_k=1):
        if token == llm.token_eos() or len(theirs) == GREEDY_TOKENS:
            break
        theirs.append(token)
    ours = greedy(twin.model, ids, GREEDY_TOKENS)
    eos = twin.tokenizer.eos_id
    assert theirs == (ours[: ours.index(eos)] if eos in ours else ours)

"""``twin export --format gguf``: read back by an independent reader, the twin's greedy tokens.

The reader is `gguf.GGUFReader` (llama.cpp's own Python package) feeding a Falcon forward pass
written here in plain torch from llama.cpp's tensor names and metadata, not through litgpt or
twin; the tokenizer is rebuilt from the file's vocabulary and merges. When llama-cpp-python is
installed, llama.cpp itself decodes the file too.

Tolerances (against twin's fp32 model): f16 logits within 0.02, q8_0 within 0.1; the greedy
tokens are the same.
"""

from __future__ import annotations

import math
from pathlib import Path

import gguf
import pytest
import torch
import torch.nn.functional as F
from litgpt.generate.base import generate_fn
from test_export import MESSAGES, finished_run, twin_prompt
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from trainhelpers import make_tiny_model

from twin.chat.generate import Twin
from twin.chat.load import load_twin
from twin.config import Settings
from twin.export.gguf_file import GGUF_FILE, MODELFILE
from twin.export.run import export_run
from twin.export.template import chat_template

GREEDY_TOKENS = 24
TOLERANCE = {"f16": 0.02, "q8_0": 0.1}


class GGUFFalcon:
    """A Falcon (7B layout) decoder read from a GGUF file: weights, config and tokenizer."""

    def __init__(self, path: Path) -> None:
        reader = gguf.GGUFReader(path)
        self.fields = {name: field.contents() for name, field in reader.fields.items()}
        assert self.fields["general.architecture"] == "falcon"
        self.weights = {
            t.name: torch.from_numpy(
                gguf.quants.dequantize(t.data, t.tensor_type).astype("float32")
            ).reshape([int(n) for n in reversed(t.shape.tolist())])
            for t in reader.tensors
        }
        self.types = {t.name: t.tensor_type.name for t in reader.tensors}
        self.n_layer = self.fields["falcon.block_count"]
        self.n_head = self.fields["falcon.attention.head_count"]
        self.n_kv = self.fields["falcon.attention.head_count_kv"]
        self.eps = self.fields["falcon.attention.layer_norm_epsilon"]
        self.rope_base = self.fields["falcon.rope.freq_base"]

    def tokenizer(self) -> Tokenizer:
        tokens = self.fields["tokenizer.ggml.tokens"]
        types = self.fields["tokenizer.ggml.token_type"]
        merges = [tuple(m.split(" ", 1)) for m in self.fields["tokenizer.ggml.merges"]]
        vocab = {t: i for i, (t, k) in enumerate(zip(tokens, types, strict=True)) if k == 1}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.add_special_tokens(
            [AddedToken(t, special=True) for t, k in zip(tokens, types, strict=True) if k == 3]
        )
        return tokenizer

    def logits(self, ids: list[int]) -> torch.Tensor:
        """(T, V) next-token scores for every position of ``ids``."""
        w, T = self.weights, len(ids)
        x = w["token_embd.weight"][torch.tensor(ids)]  # (T, C)
        head_size = x.size(-1) // self.n_head
        inv_freq = 1.0 / self.rope_base ** (torch.arange(0, head_size, 2).float() / head_size)
        angles = torch.outer(torch.arange(T).float(), inv_freq)  # (T, hs/2)
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)

        def rope(t: torch.Tensor) -> torch.Tensor:  # (H, T, hs), GPT-NeoX halves
            half = t.size(-1) // 2
            return t * cos + torch.cat([-t[..., half:], t[..., :half]], -1) * sin

        mask = torch.full((T, T), float("-inf")).triu(1)
        for i in range(self.n_layer):
            b = f"blk.{i}."
            h = F.layer_norm(
                x, x.shape[-1:], w[b + "attn_norm.weight"], w[b + "attn_norm.bias"], self.eps
            )
            q, k, v = (h @ w[b + "attn_qkv.weight"].T).split(
                [self.n_head * head_size, self.n_kv * head_size, self.n_kv * head_size], -1
            )
            q = rope(q.view(T, self.n_head, head_size).transpose(0, 1))
            k = rope(k.view(T, self.n_kv, head_size).transpose(0, 1))
            v = v.view(T, self.n_kv, head_size).transpose(0, 1)
            k = k.repeat_interleave(self.n_head // self.n_kv, 0)
            v = v.repeat_interleave(self.n_head // self.n_kv, 0)
            scores = q @ k.transpose(-1, -2) / math.sqrt(head_size) + mask
            attn = (scores.softmax(-1) @ v).transpose(0, 1).reshape(T, -1)
            mlp = F.gelu(h @ w[b + "ffn_up.weight"].T) @ w[b + "ffn_down.weight"].T
            x = x + attn @ w[b + "attn_output.weight"].T + mlp  # parallel residual
        x = F.layer_norm(x, x.shape[-1:], w["output_norm.weight"], w["output_norm.bias"], self.eps)
        return x @ w["output.weight"].T

    def greedy(self, ids: list[int], steps: int) -> list[int]:
        out: list[int] = []
        for _ in range(steps):
            token = int(self.logits(ids + out)[-1].argmax())
            if token == self.fields["tokenizer.ggml.eos_token_id"]:
                break
            out.append(token)
        return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = make_tiny_model(tmp_path_factory.mktemp("gguf") / "base", pretrain_steps=30)
    return finished_run(base.parent / "data" / "runs", "20240101-000000", base)


@pytest.fixture(scope="module")
def twin(tiny_run: Path) -> Twin:
    return load_twin(run_dir=tiny_run)


def _export(run_dir: Path, quant: str) -> Path:
    settings = Settings(data_dir=run_dir.parent.parent)
    return export_run(settings=settings, run=run_dir.name, fmt="gguf", quant=quant, me="Me")


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_gguf_read_back_independently_gives_the_twins_tokens(
    tiny_run: Path, twin: Twin, quant: str
) -> None:
    out = _export(tiny_run, quant)
    model = GGUFFalcon(out / GGUF_FILE)
    assert model.types["blk.0.attn_qkv.weight"] == quant.upper()
    assert model.types["blk.0.attn_norm.weight"] == "F32"
    prompt = twin_prompt(MESSAGES, me="Me", default_peer="Friend")
    ids = twin.tokenizer.encode(prompt).tolist()
    assert model.tokenizer().encode(prompt).ids == ids
    vocab = twin.model.config.vocab_size
    with torch.no_grad():
        ours = twin.model.forward(torch.tensor([ids]))[0, :, :vocab]
        theirs = model.logits(ids)[:, :vocab]
    assert (ours - theirs).abs().max().item() < TOLERANCE[quant]
    ours_greedy = torch.cat(
        list(generate_fn(twin.model, torch.tensor(ids), len(ids) + GREEDY_TOKENS,
                         temperature=0.0, include_prompt=False, include_eos=False))
    ).tolist()  # fmt: skip
    assert model.greedy(ids, GREEDY_TOKENS) == ours_greedy
    # The chat template and the Modelfile travel with the weights.
    assert model.fields["tokenizer.chat_template"] == chat_template(me="Me", peer="Friend")
    modelfile = (out / MODELFILE).read_text()
    assert f"FROM ./{GGUF_FILE}" in modelfile
    assert 'PARAMETER stop "Friend: "' in modelfile


def test_llama_cpp_decodes_the_gguf_like_the_twin(tiny_run: Path, twin: Twin) -> None:
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (it builds llama.cpp from source)"
    )
    out = _export(tiny_run, "f16")
    llm = llama_cpp.Llama(model_path=str(out / GGUF_FILE), n_ctx=512, verbose=False)
    prompt = twin_prompt(MESSAGES, me="Me", default_peer="Friend")
    ids = twin.tokenizer.encode(prompt).tolist()
    assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
    theirs = []
    for token in llm.generate(ids, temp=0.0, top_k=1):
        if token == llm.token_eos() or len(theirs) == GREEDY_TOKENS:
            break
        theirs.append(token)
    ours = torch.cat(
        list(generate_fn(twin.model, torch.tensor(ids), len(ids) + GREEDY_TOKENS,
                         temperature=0.0, include_prompt=False, include_eos=False))
    ).tolist()  # fmt: skip
    assert theirs == ours

"""``twin export --format hf``: the merged twin loads in transformers and computes what twin does.

Tolerances: fp32 logits of transformers and of twin's merged model agree within 1e-4 (measured:
~1e-6), and greedy generation gives the same tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from litgpt.config import Config
from litgpt.generate.base import generate_fn
from litgpt.model import GPT
from litgpt.utils import save_config
from trainhelpers import make_tiny_model, random_lora_run
from typer.testing import CliRunner

from twin.chat.generate import Twin
from twin.chat.load import load_twin
from twin.config import Settings
from twin.errors import ExportError
from twin.export.run import export_run, list_exports
from twin.prepare.format import render_context, render_instruction, render_prompt, stop_sequences
from twin.runs import LoraSettings

transformers = pytest.importorskip("transformers", reason="transformers is a test-only extra")

LORA = LoraSettings(r=4, alpha=8, dropout=0.0, query=True, value=True, mlp=True, head=True)
LOGITS_TOLERANCE = 1e-4
GREEDY_TOKENS = 24
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "ignored: the twin was trained on chats"},
    {"role": "user", "content": "hey!\nare you coming?", "name": "Anna: K."},
    {"role": "assistant", "content": "yes tea, love it :)"},
    {"role": "user", "content": [{"type": "text", "text": "do you like "},
                                 {"type": "text", "text": "jazz?"}]},
]  # fmt: skip


def finished_run(
    runs: Path,
    run_id: str,
    base_dir: Path,
    *,
    seed: int = 0,
    lora: LoraSettings = LORA,
    lora_b_std: float = 0.2,
) -> Path:
    return random_lora_run(runs, run_id, base_dir, lora, seed=seed, lora_b_std=lora_b_std)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("export") / "base", pretrain_steps=30)


@pytest.fixture(scope="module")
def tiny_run(tiny_base: Path) -> Path:
    return finished_run(tiny_base.parent / "data" / "runs", "20240101-000000", tiny_base)


@pytest.fixture(scope="module")
def hf_dir(tiny_run: Path) -> Path:
    settings = Settings(data_dir=tiny_run.parent.parent)
    return export_run(settings=settings, run=tiny_run.name, fmt="hf", me="Me", peer="Friend")


def twin_prompt(messages: list[dict[str, Any]], *, me: str, default_peer: str) -> str:
    """twin's own prompt for OpenAI-style messages (the mapping of twin's /v1 API)."""
    from twin.web.routers.openai_api import ChatMessage, messages_to_turns

    turns, peer = messages_to_turns(
        [ChatMessage.model_validate(m) for m in messages], me=me, default_peer=default_peer
    )
    return render_prompt(
        instruction=render_instruction(me=me, peer=peer), input=render_context(turns)
    )


def assert_same_model(
    twin: Twin, hf_model: Any, tokenizer: Any, prompt: str, *, greedy_prompt_tokens: int = 0
) -> None:
    """Same logits (within the tolerance) and the same greedy tokens, twin vs transformers.

    ``greedy_prompt_tokens``: generate after only the first N prompt tokens (0: all) — litgpt's
    KV cache refuses a first chunk longer than a sliding window.
    """
    ids = twin.tokenizer.encode(prompt).to(torch.int64)
    assert tokenizer(prompt, return_tensors="pt").input_ids[0].tolist() == ids.tolist()
    vocab = twin.model.config.vocab_size
    with torch.no_grad():
        theirs = hf_model(ids[None]).logits[0, :, :vocab]
        ours = GPT.forward(twin.model, ids[None])[0, :, :vocab]
    assert (theirs - ours).abs().max().item() < LOGITS_TOLERANCE
    ids = ids[:greedy_prompt_tokens] if greedy_prompt_tokens else ids
    ours_greedy = torch.cat(
        list(generate_fn(twin.model, ids, len(ids) + GREEDY_TOKENS, temperature=0.0,
                         include_prompt=False, include_eos=True))
    ).tolist()  # fmt: skip
    # No stop strings here: litgpt's loop has none (twin's own stop handling is tested elsewhere).
    plain = transformers.GenerationConfig(
        max_new_tokens=GREEDY_TOKENS, do_sample=False, eos_token_id=twin.tokenizer.eos_id
    )
    hf_model.generation_config = plain
    theirs_greedy = hf_model.generate(ids[None])[0, len(ids) :].tolist()
    assert theirs_greedy == ours_greedy


def test_hf_export_loads_in_transformers_and_matches_the_twin(
    tiny_base: Path, tiny_run: Path, hf_dir: Path
) -> None:
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, me="Me")
    assert prompt == twin_prompt(MESSAGES, me="Me", default_peer="Friend")
    assert_same_model(load_twin(run_dir=tiny_run), hf_model, tokenizer, prompt)
    # The adapter is in the export: the base model alone computes something else.
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        base = GPT.forward(load_twin(base_model_dir=tiny_base).model, ids)[0, -1, :64]
        assert (hf_model(ids).logits[0, -1, :64] - base).abs().max().item() > 1e-2
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    assert generation["stop_strings"] == stop_sequences(me="Me", peer="Friend")
    assert generation["eos_token_id"] == load_twin(base_model_dir=tiny_base).tokenizer.eos_id


@pytest.mark.parametrize(
    ("messages", "me"),
    [
        (MESSAGES, "Me"),
        (MESSAGES, "  Boris\n: B "),  # my name cleaned as twin cleans it
        ([{"role": "user", "content": "hi"}], "Me"),  # nobody named: the export's default peer
        ([{"role": "user", "content": "a", "name": "Carla"},
          {"role": "user", "content": "b"}], "Me"),
        ([{"role": "user", "content": "x", "name": "   "}], "Me"),  # a blank name names nobody
    ],
)  # fmt: skip
def test_chat_template_renders_exactly_twins_prompt(
    hf_dir: Path, messages: list[dict[str, Any]], me: str
) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, me=me)
    assert rendered == twin_prompt(messages, me=me.strip(), default_peer="Friend")
    # Without `me`, the name given at export time.
    assert tokenizer.apply_chat_template(messages, tokenize=False) == twin_prompt(
        messages, me="Me", default_peer="Friend"
    )


def _tiny_gemma3(out_dir: Path, tokenizer_dir: Path, **shape: Any) -> Path:
    """A randomly initialized Gemma-3-shaped litgpt checkpoint (the 270M model's structure,
    shrunk), with the tokenizer files of ``tokenizer_dir``; ``shape`` overrides the config."""
    config = Config.from_name(
        "Gemma-3-1b-it", **{
            "n_layer": 3, "n_embd": 64, "n_head": 4, "n_query_groups": 1, "head_size": 16,
            "intermediate_size": 128, "vocab_size": 512, "padded_vocab_size": 512,
            "block_size": 512, "sliding_window_size": 16, "sliding_window_indices": [1, 1, 0],
            "rope_indices": [1, 1, 0], "attention_scores_scalar": 16, **shape,
        }
    )  # fmt: skip
    config.name = "Gemma-3-tiny"  # "Gemma" in the name: litgpt's RMSNorm unit offset
    out_dir.mkdir(parents=True)
    torch.manual_seed(1)
    model = GPT(config)
    model.apply(model._init_weights)
    with torch.no_grad():  # non-trivial norm weights, so a wrong offset would show
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0.0, 0.3)
    state = model.state_dict()
    state["lm_head.weight"] = state["transformer.wte.weight"]  # Gemma ties the head
    torch.save(state, out_dir / "lit_model.pth")
    save_config(config, out_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        (out_dir / name).write_bytes((tokenizer_dir / name).read_bytes())
    return out_dir


def test_gemma3_export_matches_the_twin(tiny_base: Path, tmp_path: Path) -> None:
    base = _tiny_gemma3(tmp_path / "gemma", tiny_base)
    run_dir = finished_run(tmp_path / "data" / "runs", "20240102-000000", base)
    settings = Settings(data_dir=tmp_path / "data")
    hf_dir = export_run(settings=settings, run=run_dir.name, fmt="hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    # Longer than the sliding window: local and global layers both matter.
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert_same_model(
        load_twin(run_dir=run_dir), hf_model, tokenizer, prompt, greedy_prompt_tokens=12
    )


@pytest.mark.xdist_group("gemma")
@pytest.mark.timeout(1800)
def test_real_gemma_export_matches_the_twin(gemma: Path, tmp_path: Path) -> None:
    base = gemma
    run_dir = finished_run(tmp_path / "data" / "runs", "20240103-000000", base)
    hf_dir = export_run(settings=Settings(data_dir=tmp_path / "data"), run=run_dir.name, fmt="hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert_same_model(load_twin(run_dir=run_dir), hf_model, tokenizer, prompt)


def test_cli_exports_and_names_bad_input(settings: Settings, tiny_base: Path) -> None:
    from twin.cli import _register_all, app

    _register_all()
    run_dir = finished_run(settings.data_dir / "runs", "20240104-000000", tiny_base)
    runner = CliRunner()
    result = runner.invoke(app, ["export", run_dir.name, "--format", "gguf", "--quant", "f16"])
    assert result.exit_code == 0, result.output
    assert [name for name, _ in list_exports(run_dir)] == ["gguf-f16"]
    with pytest.raises(ExportError, match="Unknown export format 'onnx'"):
        export_run(settings=settings, run=run_dir.name, fmt="onnx")
    with pytest.raises(ExportError, match="Unknown GGUF type 'q2'"):
        export_run(settings=settings, run=run_dir.name, fmt="gguf", quant="q2")
    with pytest.raises(ExportError, match="No training run 'nope'"):
        export_run(settings=settings, run="nope", fmt="hf")


def test_a_failed_export_leaves_nothing_behind(
    settings: Settings, tiny_base: Path, tmp_path: Path
) -> None:
    # llama.cpp scales Gemma 3's attention by 1/sqrt(head size) whatever the file says: a model
    # scaled otherwise fails after merging, with the reason, and cleans up.
    base = _tiny_gemma3(tmp_path / "gemma", tiny_base, attention_scores_scalar=32)
    run_dir = finished_run(settings.data_dir / "runs", "20240105-000000", base)
    with pytest.raises(ExportError, match=r"attention scaled by 1/sqrt\(32\) where llama.cpp uses"):
        export_run(settings=settings, run=run_dir.name, fmt="gguf")
    assert list((run_dir / "export").iterdir()) == []

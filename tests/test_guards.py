"""Non-finite steps: a NaN step is skipped (weights and optimizer state untouched) and counted, training
goes on; too many in a row stop the run with a clear message and no saved model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers import ROOT, run_posttrain, tiny_cpl_recipe
from test_cpl_trainer import _config, _trainer

from posttrain.trainers.cpl_trainer import CPLTrainer
from posttrain.trainers.guards import NonFiniteTraining, grads_finite

pytestmark = pytest.mark.integration


def _poison(monkeypatch, bad_steps: set[int]):
    """Make the loss NaN (so every gradient is NaN) on the given 1-based optimizer steps."""
    compute_loss = CPLTrainer.compute_loss

    def poisoned(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
        if self.model.training and self.state.global_step + 1 in bad_steps:
            return loss * float("nan")
        return loss

    monkeypatch.setattr(CPLTrainer, "compute_loss", poisoned)


def test_nan_step_is_skipped_and_counted(monkeypatch, tiny_model_dir, tiny_tokenizer, tmp_path):
    _poison(monkeypatch, {2})
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path, max_steps=3))
    snapshots = []

    class Snapshot(__import__("transformers").TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})

    trainer.add_callback(Snapshot())
    trainer.train()
    after_1, after_2, after_3 = snapshots
    assert all(torch.equal(after_1[n], after_2[n]) for n in after_1)  # step 2: no update at all
    assert any(not torch.equal(after_2[n], after_3[n]) for n in after_2)  # step 3 trains again
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert trainer.nonfinite_skipped == 1
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert "nonfinite_skipped" not in logged[0] and logged[1]["nonfinite_skipped"] == 1.0
    assert logged[2]["nonfinite_skipped"] == 1.0


def test_too_many_in_a_row_stops(monkeypatch, tiny_model_dir, tiny_tokenizer, tmp_path):
    _poison(monkeypatch, {2, 3, 4})
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path, max_steps=6, max_nonfinite_steps=3))
    with pytest.raises(NonFiniteTraining, match="3 consecutive updates had NaN/inf gradients"):
        trainer.train()
    assert trainer.state.global_step == 3  # step 4's update was the third in a row
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_guard_off_applies_the_nan_update(monkeypatch, tiny_model_dir, tiny_tokenizer, tmp_path):
    """The check matters: without it, one NaN step ruins the weights."""
    _poison(monkeypatch, {2})
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path, max_steps=2, max_nonfinite_steps=0))
    trainer.train()
    assert not all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_grads_finite():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p, torch.nn.Parameter(torch.ones(2))], lr=0.1)  # the second has no grad
    p.grad = torch.tensor([1.0, 2.0, 3.0])
    assert grads_finite(opt)
    p.grad = torch.tensor([1.0, float("inf"), 3.0])
    assert not grads_finite(opt)


def test_cli_stops_without_saving(tiny_model_dir, tmp_path):
    """Through `posttrain train`: exit 1, one clear line, no final model written."""
    out = tmp_path / "run"
    training = (
        'max_steps: 4, per_device_train_batch_size: 4, logging_steps: 1, save_strategy: "no", report_to: none, '
        "learning_rate: 1.0e+30, max_nonfinite_steps: 2, lr_scheduler_type: constant"
    )
    recipe = tiny_cpl_recipe(tmp_path / "r.yaml", tiny_model_dir, out, training)
    # a huge learning rate in fp32 blows the weights up to inf after the first update: NaN gradients follow
    proc = run_posttrain("train", recipe)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "consecutive updates had NaN/inf gradients" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "model.safetensors").exists()


FSDP2_SCRIPT = """
import os, sys, torch, torch.distributed as dist
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from posttrain.trainers.guards import grads_finite
mesh = init_device_mesh("cpu", (1,))
model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
for layer in model:
    fully_shard(layer, mesh=mesh)
fully_shard(model, mesh=mesh)
opt = torch.optim.AdamW(model.parameters(), lr=0.1)
model(torch.ones(2, 4)).sum().backward()
print(type(next(model.parameters()).grad).__name__, grads_finite(opt))
(model(torch.ones(2, 4)).sum() * float("nan")).backward()
print(grads_finite(opt))
dist.destroy_process_group()
sys.stdout.flush()
os._exit(0)  # gloo's threads can abort a normal interpreter teardown
"""


def test_grads_finite_on_fsdp2_dtensor_gradients():
    """FSDP2 gradients are DTensors: the check reads each rank's shard (an all-reduce of a DTensor fails:
    'c10d.allreduce_.default does not have a sharding strategy registered', seen on a GPU)."""
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", FSDP2_SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["DTensor", "True", "False"]

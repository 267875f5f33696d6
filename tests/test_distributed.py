"""CPL under `accelerate launch --num_processes 2` on CPU (gloo): DDP and DeepSpeed ZeRO-2.

The first logged losses must equal a single-process run on the same global batch. The data is 8 records
and the global batch is 8 (2 processes × 4, or 1 × 8), so every step sees the whole set whatever the
sampler's shuffle: any difference comes from the distributed path itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import DEMO, ROOT

pytestmark = [pytest.mark.distributed, pytest.mark.integration]

ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")


def _recipe(tmp_path, tiny_model_dir):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        f"""# Launch: accelerate launch --config_file launch/cpu_2proc.yaml -m posttrain train {path}
method: cpl
output_dir: {tmp_path / "unused"}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data:
  train: {{path: {DEMO / "preferences.jsonl"}, limit: 8}}
  max_length: 128
  max_prompt_length: 64
cpl: {{alpha: 0.1, bias: 0.5, bc_weight: 0.1}}
training: {{max_steps: 3, per_device_train_batch_size: 4, logging_steps: 1, save_strategy: "no",
           report_to: none, learning_rate: 1.0e-3, seed: 1, lr_scheduler_type: linear}}
"""
    )
    return path


def _losses(out_dir) -> list[float]:
    history = json.loads((out_dir / "log_history.json").read_text())
    return [row["loss"] for row in history if "loss" in row]


def _run(cmd, port=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


@pytest.fixture(scope="module")
def single_process_losses(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("single")
    recipe = _recipe(tmp, tiny_model_dir)
    out = tmp / "out"
    _run(
        [
            sys.executable,
            "-m",
            "posttrain",
            "train",
            str(recipe),
            f"output_dir={out}",
            "training.per_device_train_batch_size=8",
        ]
    )
    return _losses(out)


@pytest.mark.parametrize("config", ["cpu_2proc.yaml", "cpu_2proc_zero2.yaml"])
def test_two_process_loss_matches_single_process(config, tmp_path, tiny_model_dir, single_process_losses):
    recipe = _recipe(tmp_path, tiny_model_dir)
    out = tmp_path / "out"
    proc = _run(
        [
            ACCELERATE,
            "launch",
            "--config_file",
            str(ROOT / "launch" / config),
            "--main_process_port",
            "0",
            "-m",
            "posttrain",
            "train",
            str(recipe),
            f"output_dir={out}",
        ]
    )
    losses = _losses(out)
    assert len(losses) == len(single_process_losses) == 3
    assert losses == pytest.approx(single_process_losses, rel=1e-4)
    # the run really was distributed: the engine's type name is in the saved trainer state
    state = json.loads((out / "run_summary.json").read_text())
    assert state["world_size"] == 2
    if "zero2" in config:
        assert state["distributed_type"] == "DEEPSPEED"
    else:
        assert state["distributed_type"] == "MULTI_CPU"
    assert "run summary" in proc.stdout

"""CPL, the RLBFF principle RM and DRPO under `accelerate launch --num_processes 2` on CPU (gloo), on every
engine that runs on CPU: DDP, DeepSpeed ZeRO-2 and DeepSpeed ZeRO-3 (launch/cpu_2proc*.yaml). FSDP2 is
GPU-only in accelerate (on CPU it would silently fall back to DDP): posttrain refuses it on CPU with a clear
message (tested here) and `python -m bench.gpu.fsdp2_check` (bench/gpu/fsdp2_check.py) checks it on a GPU.

CPL and the principle RM: the first logged losses must equal a single-process run on the same global batch.
The data is 8 records and the global batch is 8 (2 processes × 4, or 1 × 8), so every step sees the whole
set whatever the sampler's shuffle: any difference comes from the distributed path itself.

DRPO samples its own completions in each process (per-process seeds), so no single-process run sees the same
rollouts; its losses must instead equal the DDP run's on the same two processes (the engine must not change
the math), and every micro-batch must hold whole groups across the two processes.

DRPO's trust region and objective mean span the micro-batch of both processes: on a fixed micro-batch,
2 DDP processes must give the one-process loss and gradient (tests/dist_drpo_loss.py).

`make test` runs a representative subset of the matrix (each launch costs ~30 s here); `make test-dist`
(POSTTRAIN_FULL_MATRIX=1) runs all of it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import ACCELERATE, DEMO, ROOT

pytestmark = [pytest.mark.distributed, pytest.mark.integration]


# engine -> (launch config, accelerate's distributed_type)
ENGINES = {
    "ddp": ("cpu_2proc.yaml", "MULTI_CPU"),
    "zero2": ("cpu_2proc_zero2.yaml", "DEEPSPEED"),
    "zero3": ("cpu_2proc_zero3.yaml", "DEEPSPEED"),
}
# what `make test` runs; the rest of trainer × engine runs under POSTTRAIN_FULL_MATRIX=1 (make test-dist)
REPRESENTATIVE = {
    ("cpl", "ddp"),
    ("cpl", "zero2"),
    ("cpl", "zero3"),
    ("rlbff", "ddp"),
    ("rlbff", "zero2"),
    ("rlbff", "zero3"),
    ("drpo", "zero2"),
    ("drpo", "zero3"),
}
FULL_MATRIX = os.environ.get("POSTTRAIN_FULL_MATRIX") == "1"


def matrix(methods):
    """pytest params (method, engine) for every engine; the non-representative ones skip unless FULL_MATRIX."""
    params = []
    for method in methods:
        for engine in ENGINES:
            marks = []
            if (method, engine) not in REPRESENTATIVE and not FULL_MATRIX:
                marks.append(pytest.mark.skip(reason="full engine matrix: run make test-dist"))
            params.append(pytest.param(method, engine, marks=marks, id=f"{method}-{engine}"))
    return params


def _recipe(tmp_path, tiny_model_dir, method="cpl"):
    path = tmp_path / "recipe.yaml"
    if method == "cpl":
        data = DEMO / "preferences.jsonl"
        section = "cpl: {alpha: 0.1, bias: 0.5, bc_weight: 0.1}"
    else:  # the RLBFF Yes/No principle RM on 8 generated principle records
        data = ROOT / "data" / "rlbff" / "principles_train.jsonl"
        section = "rlbff: {form: yes_no}"
    path.write_text(
        f"""# Launch: accelerate launch --config_file launch/cpu_2proc.yaml -m posttrain train {path}
method: {method}
output_dir: {tmp_path / "unused"}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data:
  train: {{path: {data}, limit: 8}}
  max_length: 256
  max_prompt_length: 64
{section}
training: {{max_steps: 3, per_device_train_batch_size: 4, logging_steps: 1, save_strategy: "no",
           report_to: none, learning_rate: 1.0e-3, seed: 1, lr_scheduler_type: linear}}
"""
    )
    return path


def _losses(out_dir) -> list[float]:
    history = json.loads((out_dir / "log_history.json").read_text())
    return [row["loss"] for row in history if "loss" in row]


_CAUSE = re.compile(r"Error|error:|terminate|what\(\)|Abort|Signal|Exception", re.IGNORECASE)


def _run(cmd, port=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    if proc.returncode != 0:
        # the root cause of a crashed worker sits above the launcher's own traceback: keep those lines
        cause = [line for line in proc.stderr.splitlines() if _CAUSE.search(line)]
        pytest.fail(
            "\n".join(
                [f"exit {proc.returncode}: {' '.join(map(str, cmd))}", *cause[:40], proc.stderr[-3000:]]
            )
        )
    return proc


def _launch(config: str, recipe, out):
    """`accelerate launch --config_file launch/<config> -m posttrain train <recipe> output_dir=<out>`."""
    cmd = [ACCELERATE, "launch", "--config_file", str(ROOT / "launch" / config), "--main_process_port", "0"]
    return _run([*cmd, "-m", "posttrain", "train", str(recipe), f"output_dir={out}"])


_SINGLE: dict[str, list[float]] = {}


def single_process_losses(method, tmp_path_factory, tiny_model_dir) -> list[float]:
    if method not in _SINGLE:
        tmp = tmp_path_factory.mktemp(f"single-{method}")
        recipe = _recipe(tmp, tiny_model_dir, method)
        out = tmp / "out"
        cmd = [sys.executable, "-m", "posttrain", "train", str(recipe), f"output_dir={out}"]
        _run([*cmd, "training.per_device_train_batch_size=8"])
        _SINGLE[method] = _losses(out)
    return _SINGLE[method]


@pytest.mark.parametrize("method, engine", matrix(["cpl", "rlbff"]))
def test_two_process_loss_matches_single_process(method, engine, tmp_path, tmp_path_factory, tiny_model_dir):
    config, distributed_type = ENGINES[engine]
    reference = single_process_losses(method, tmp_path_factory, tiny_model_dir)
    recipe = _recipe(tmp_path, tiny_model_dir, method)
    out = tmp_path / "out"
    proc = _launch(config, recipe, out)
    losses = _losses(out)
    assert len(losses) == len(reference) == 3
    assert losses == pytest.approx(reference, rel=1e-4)
    # the run really was distributed, on the engine the config names
    state = json.loads((out / "run_summary.json").read_text())
    assert state["world_size"] == 2
    assert state["distributed_type"] == distributed_type
    assert "run summary" in proc.stdout


def _drpo_recipe(tmp_path, tiny_model_dir):
    data = tmp_path / "sums.jsonl"
    data.write_text(
        "".join(
            json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(16)
        )
    )
    path = tmp_path / "drpo.yaml"
    path.write_text(
        f"""# Launch: accelerate launch --config_file launch/cpu_2proc.yaml -m posttrain train {path}
method: drpo
output_dir: {tmp_path / "unused"}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data:
  train: {{path: {data}, format: math}}
drpo: {{num_generations: 4, max_completion_length: 8, rewards: ["drpo_test_rewards:parity"], allow_custom_rewards: true, steps_per_generation: 2}}
training: {{max_steps: 4, per_device_train_batch_size: 8, logging_steps: 1, save_strategy: "no", report_to: none,
           seed: 1, learning_rate: 1.0e-3}}
"""
    )
    return path


_DDP_DRPO: list[dict] = []


def drpo_ddp_steps(tmp_path_factory, tiny_model_dir) -> list[dict]:
    """The logged steps of the DRPO recipe under DDP on 2 processes: the reference for the other engines."""
    if not _DDP_DRPO:
        tmp = tmp_path_factory.mktemp("drpo-ddp")
        _launch(ENGINES["ddp"][0], _drpo_recipe(tmp, tiny_model_dir), tmp / "out")
        history = json.loads((tmp / "out" / "log_history.json").read_text())
        _DDP_DRPO.extend(row for row in history if "loss" in row)
    return _DDP_DRPO


@pytest.mark.parametrize("method, engine", matrix(["drpo"]))
def test_drpo_two_processes_keep_groups_whole(
    method, engine, tmp_path, tmp_path_factory, tiny_model_dir, monkeypatch
):
    """Each process generates whole groups and every micro-batch holds whole groups: the trainer checks
    every micro-batch (prompt ids identical within each block of num_generations rows) and stops otherwise.
    ZeRO and FSDP runs equal the DDP run step by step (same rollouts, same losses)."""
    config, distributed_type = ENGINES[engine]
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    out = tmp_path / "out"
    proc = _launch(config, _drpo_recipe(tmp_path, tiny_model_dir), out)
    state = json.loads((out / "run_summary.json").read_text())
    assert state["world_size"] == 2 and state["steps"] == 4
    assert state["distributed_type"] == distributed_type
    history = json.loads((out / "log_history.json").read_text())
    steps = [row for row in history if "loss" in row]
    assert len(steps) == 4
    for row in steps:
        assert row["loss"] == pytest.approx(-row["objective"] + row["kl_penalty"], abs=1e-4)
    # 2 processes × 8 rows = 4 groups of 4 per rollout; some of them carry a signal
    assert any(row.get("groups/valid_fraction", 0) > 0 for row in steps)
    assert "run summary" in proc.stdout
    if engine != "ddp":
        reference = drpo_ddp_steps(tmp_path_factory, tiny_model_dir)
        for mine, ref in zip(steps, reference, strict=True):
            assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-4, abs=1e-5)
            # rollout metrics are logged on the steps that generated (every steps_per_generation)
            assert ("reward" in mine) == ("reward" in ref)
            if "reward" in ref:
                assert mine["reward"] == pytest.approx(ref["reward"], abs=1e-6)
                assert mine["completions/mean_length"] == pytest.approx(ref["completions/mean_length"])


def test_drpo_trust_region_spans_both_processes(tmp_path):
    """DRPO's loss on a micro-batch split over 2 DDP processes equals the one-process loss of the whole
    micro-batch: value (mean over processes) and gradient (DDP's average), with the token-mean KL reduced
    across processes before the hinge (tests/dist_drpo_loss.py; a linear policy, ~30 s)."""
    out = tmp_path / "result.json"
    cmd = [ACCELERATE, "launch", "--config_file", str(ROOT / "launch" / "cpu_2proc.yaml")]
    _run([*cmd, "--main_process_port", "0", str(ROOT / "tests" / "dist_drpo_loss.py"), str(out)])
    result = json.loads(out.read_text())
    assert result["world_size"] == 2
    assert result["kl"] == pytest.approx(result["kl_reference"], rel=1e-6) and result["kl"] > 1e-4
    assert result["loss_mean"] == pytest.approx(result["loss_reference"], rel=1e-5)
    assert result["grad_max_abs_diff"] <= 1e-5 * result["grad_max_abs"]
    # a hinge per process (the previous behaviour) gives another loss on this micro-batch
    assert abs(result["per_process_hinge_mean"] - result["loss_reference"]) > 0.1


def test_fsdp_on_cpu_is_refused_clearly(tmp_path, tiny_model_dir):
    """accelerate turns FSDP on only for GPU-class devices; on CPU the run would quietly be DDP. posttrain
    says so before anything is written."""
    out = tmp_path / "out"
    cmd = [
        ACCELERATE,
        "launch",
        "--config_file",
        str(ROOT / "launch" / "fsdp2.yaml"),
        "--main_process_port",
        "0",
    ]
    cmd += ["--num_processes", "2", "--mixed_precision", "no"]
    cmd += ["-m", "posttrain", "train", str(_recipe(tmp_path, tiny_model_dir, "cpl")), f"output_dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert proc.returncode != 0
    assert "error: FSDP needs GPUs" in proc.stderr and "cpu_2proc_zero3.yaml" in proc.stderr
    assert not out.exists()

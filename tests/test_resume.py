"""Kill a run, rerun the same command, and get the uninterrupted run's losses: SIGKILL between steps,
SIGKILL in the middle of a checkpoint save (the half-written checkpoint is never resumed from), and SIGTERM
(a clean stop with a checkpoint). The CPL recipe crosses its BC warm-up (optimizer and LR schedule
restart) and an epoch boundary, so the resumed optimizer, scheduler, RNG and data position all matter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, tiny_cpl_recipe

from posttrain.checkpoints import COMPLETE_MARKER, last_complete_checkpoint, resume_point
from posttrain.errors import UserError

pytestmark = pytest.mark.integration

# Faults injected into a real `posttrain train` process (the test's only hook into it).
DRIVER = """
import os, signal, sys
import transformers

mode, at = os.environ.get("FAULT", ""), int(os.environ.get("FAULT_STEP", "0"))

class Fault(transformers.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == at:
            os.kill(os.getpid(), signal.SIGKILL if mode == "kill" else signal.SIGTERM)

if mode in ("kill", "term"):
    train = transformers.Trainer.train
    def patched(self, *a, **k):
        self.add_callback(Fault())
        return train(self, *a, **k)
    transformers.Trainer.train = patched
elif mode == "kill_in_save":  # after model, optimizer and RNG are written, before trainer_state.json
    save_rng = transformers.Trainer._save_rng_state
    def patched(self, output_dir):
        save_rng(self, output_dir)
        if self.state.global_step == at:
            os.kill(os.getpid(), signal.SIGKILL)
    transformers.Trainer._save_rng_state = patched

from posttrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _recipe(tmp_path: Path, tiny_model_dir: Path, out: Path, method: str = "cpl") -> Path:
    path = tmp_path / f"{out.name}.yaml"
    if method == "drpo":  # 4 problems × 4 samples per step, a rollout every step, parity reward
        problems = tmp_path / "sums.jsonl"
        problems.write_text(
            "".join(json.dumps({"problem": f"{i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(12))
        )
        path.write_text(
            f"""# Launch: posttrain train {path}
method: drpo
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data: {{train: {{path: {problems}, format: math}}}}
drpo: {{updates_per_rollout: 1, num_generations: 4, max_completion_length: 6, rewards: ["drpo_test_rewards:parity"], allow_custom_rewards: true, temperature: 1.0}}
training: {{max_steps: 6, per_device_train_batch_size: 16, logging_steps: 1, save_strategy: steps, save_steps: 2,
           save_total_limit: 1, report_to: none, learning_rate: 1.0e-3, seed: 5}}
"""
        )
        return path
    if method == "rlbff":  # the Yes/No principle RM
        path.write_text(
            f"""# Launch: posttrain train {path}
method: rlbff
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data:
  train: {{path: {ROOT / "data" / "rlbff" / "principles_train.jsonl"}, limit: 16}}
  max_length: 256
  max_prompt_length: 64
rlbff: {{form: yes_no}}
training: {{max_steps: 6, per_device_train_batch_size: 4, logging_steps: 1, save_strategy: steps, save_steps: 2,
           save_total_limit: 1, report_to: none, learning_rate: 1.0e-3, lr_scheduler_type: linear, seed: 5}}
"""
        )
        return path
    training = (
        "max_steps: 8, per_device_train_batch_size: 4, logging_steps: 1, save_strategy: steps, save_steps: 2, "
        "save_total_limit: 1, report_to: none, learning_rate: 1.0e-3, lr_scheduler_type: linear, "
        "warmup_steps: 1, seed: 5"
    )
    return tiny_cpl_recipe(path, tiny_model_dir, out, training, cpl="bc_warmup_steps: 3")


def _run(
    tmp_path: Path,
    recipe: Path,
    fault: str = "",
    step: int = 0,
    launch: str | None = None,
    overrides: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`posttrain train RECIPE` through the fault-injecting driver; ``launch``: an accelerate config to
    run it under (2 processes)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "FAULT": fault, "FAULT_STEP": str(step), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])  # test rewards
    cmd = [sys.executable, str(driver), "train", str(recipe), *overrides]
    if launch is not None:
        accelerate = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch"]
        cmd = [
            *accelerate,
            "--config_file",
            str(ROOT / "launch" / launch),
            "--main_process_port",
            "0",
            *cmd[1:],
        ]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


def _losses(out: Path) -> dict[int, float]:
    history = json.loads((out / "log_history.json").read_text())
    return {row["step"]: row["loss"] for row in history if "loss" in row}


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory) -> dict[int, float]:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    out = tmp / "run"
    proc = _run(tmp, _recipe(tmp, tiny_model_dir, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = _losses(out)
    assert sorted(losses) == list(range(1, 9))
    return losses


def _assert_same_losses(out: Path, reference: dict[int, float]) -> None:
    losses = _losses(out)
    assert sorted(losses) == sorted(reference)
    for step, loss in reference.items():
        assert losses[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), f"step {step}"


def test_sigkill_between_steps_then_resume(tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, tiny_model_dir, out)
    killed = _run(tmp_path, recipe, "kill", 5)
    assert killed.returncode == -signal.SIGKILL
    assert last_complete_checkpoint(out).name == "checkpoint-4"  # BC warm-up (3 steps) already behind it
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-4"]  # save_total_limit 1
    resumed = _run(tmp_path, recipe)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "checkpoint-4" in resumed.stdout
    _assert_same_losses(out, reference)


def test_sigkill_during_save_never_resumes_a_half_checkpoint(tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, tiny_model_dir, out)
    killed = _run(tmp_path, recipe, "kill_in_save", 6)
    assert killed.returncode == -signal.SIGKILL
    half = out / "checkpoint-6"
    assert half.is_dir() and not (half / COMPLETE_MARKER).exists()
    assert (half / "model.safetensors").exists() and not (half / "trainer_state.json").exists()
    # the previous complete checkpoint was not rotated away before the new one was complete
    assert (out / "checkpoint-4" / COMPLETE_MARKER).is_file()
    resumed = _run(tmp_path, recipe)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "removing unfinished checkpoint" in resumed.stdout and "checkpoint-4" in resumed.stdout
    _assert_same_losses(out, reference)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-8"]


def test_sigterm_saves_and_stops_then_resume(tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, tiny_model_dir, out)
    stopped = _run(tmp_path, recipe, "term", 5)
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    assert "rerun the same command to resume" in stopped.stderr
    # the signal lands after step 5's checks: the stop (and its checkpoint) comes after step 6
    assert last_complete_checkpoint(out).name == "checkpoint-6"
    assert not (out / "model.safetensors").exists()  # no final model from a stopped run
    resumed = _run(tmp_path, recipe)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_losses(out, reference)


@pytest.mark.parametrize("method", ["rlbff", "drpo"])
def test_other_trainers_resume_to_the_same_losses(method, tiny_model_dir, tmp_path):
    """The principle RM and DRPO (whose rollouts are generated with the restored RNG, from the restored
    data position) continue exactly after a SIGKILL."""
    reference_out = tmp_path / "reference"
    proc = _run(tmp_path, _recipe(tmp_path, tiny_model_dir, reference_out, method))
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference_losses = _losses(reference_out)
    assert sorted(reference_losses) == list(range(1, 7))

    out = tmp_path / "run"
    recipe = _recipe(tmp_path, tiny_model_dir, out, method)
    assert _run(tmp_path, recipe, "kill", 3).returncode == -signal.SIGKILL
    assert last_complete_checkpoint(out).name == "checkpoint-2"
    resumed = _run(tmp_path, recipe)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint-2" in resumed.stdout
    _assert_same_losses(out, reference_losses)
    if method == "drpo":  # the rollouts themselves were the same: rewards and lengths match step by step
        history = {r["step"]: r for r in json.loads((out / "log_history.json").read_text()) if "loss" in r}
        first = {
            r["step"]: r for r in json.loads((reference_out / "log_history.json").read_text()) if "loss" in r
        }
        for step in range(3, 7):
            assert history[step]["reward"] == pytest.approx(first[step]["reward"])
            assert history[step]["completions/mean_length"] == pytest.approx(
                first[step]["completions/mean_length"]
            )


@pytest.mark.parametrize("method", ["cpl", "rlbff", "drpo"])
def test_resume_with_a_lower_max_steps_stops_exactly_there(method, tiny_model_dir, tmp_path):
    """Killed after checkpoint-N, resumed with training.max_steps=N: no step N+1 (the Trainer checks
    max_steps only after a step, so it used to train one more); a max_steps below the checkpoint's step is
    refused rather than silently saving the later model. (CPL's recipe needs max_steps above its 3 BC
    warm-up steps, so its checkpoint is the one at step 4.)"""
    last = 4 if method == "cpl" else 2
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, tiny_model_dir, out, method)
    assert _run(tmp_path, recipe, "kill", last + 1).returncode == -signal.SIGKILL
    assert last_complete_checkpoint(out).name == f"checkpoint-{last}"
    if method != "cpl":
        refused = _run(tmp_path, recipe, overrides=(f"training.max_steps={last - 1}",))
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert f"checkpoint resumed from is at step {last}" in refused.stderr
        assert "Traceback" not in refused.stderr
    resumed = _run(tmp_path, recipe, overrides=(f"training.max_steps={last}",))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"checkpoint-{last}" in resumed.stdout
    assert sorted(_losses(out)) == list(range(1, last + 1))
    assert json.loads((out / "run_summary.json").read_text())["steps"] == last
    assert [p.name for p in out.glob("checkpoint-*")] == [f"checkpoint-{last}"]
    assert any(out.glob("*.safetensors"))  # the final model: the checkpoint's weights


@pytest.mark.distributed
@pytest.mark.parametrize("launch", ["cpu_2proc_zero2.yaml"])
def test_two_process_deepspeed_run_resumes_to_the_same_losses(launch, tiny_model_dir, tmp_path):
    """Under DeepSpeed every rank writes its own optimizer shards; the completion marker comes after all of
    them. One rank is SIGKILLed (the launcher takes the other down); the rerun resumes on both ranks. (Found
    here: after the BC warm-up, rebuilding the restarted LR schedule reset the rates DeepSpeed had loaded.)"""
    reference_out = tmp_path / "reference"
    proc = _run(tmp_path, _recipe(tmp_path, tiny_model_dir, reference_out), launch=launch)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, tiny_model_dir, out)
    assert _run(tmp_path, recipe, "kill", 5, launch=launch).returncode != 0
    assert last_complete_checkpoint(out).name == "checkpoint-4"
    assert any((out / "checkpoint-4").glob("global_step*/*optim_states.pt"))  # DeepSpeed's own shards
    resumed = _run(tmp_path, recipe, launch=launch)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    _assert_same_losses(out, _losses(reference_out))


def test_resume_refuses_a_changed_recipe(tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, tiny_model_dir, out)
    assert _run(tmp_path, recipe, "kill", 3).returncode == -signal.SIGKILL
    recipe.write_text(recipe.read_text().replace("learning_rate: 1.0e-3", "learning_rate: 2.0e-3"))
    proc = _run(tmp_path, recipe)
    assert proc.returncode == 2
    assert "training.learning_rate changed" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_point_rules(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / COMPLETE_MARKER).write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint name: ignored
    assert resume_point(tmp_path, None, main_process=False) == str(tmp_path / "checkpoint-4")
    assert (tmp_path / "checkpoint-6").exists()  # only the main process cleans up
    assert resume_point(tmp_path, None, main_process=True) == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-6").exists()
    assert resume_point(tmp_path, str(tmp_path / "checkpoint-2"), main_process=True).endswith("checkpoint-2")
    (tmp_path / "checkpoint-8").mkdir()
    with pytest.raises(UserError, match="not completely written"):
        resume_point(tmp_path, str(tmp_path / "checkpoint-8"), main_process=True)
    assert resume_point(tmp_path / "empty", None, main_process=True) is None

"""What a run leaves behind besides the weights: logs of short runs, experiment trackers (TensorBoard,
W&B offline, trackio), model cards for every saved model, and one copy of each progress bar and warning
under a multi-process launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, tiny_cpl_recipe

from posttrain.errors import UserError


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _cpl_recipe(tmp_path: Path, tiny_model_dir: Path, out: Path, training: str, extra: str = "") -> Path:
    return tiny_cpl_recipe(tmp_path / "cpl.yaml", tiny_model_dir, out, training, model_extra=extra)


@pytest.mark.integration
def test_short_cpl_run_logs_first_and_last_step_to_every_tracker_and_writes_cards(tiny_model_dir, tmp_path):
    """4 steps with logging_steps 5: steps 1 and 4 are logged anyway, the summary shows the loss; report_to
    TensorBoard, W&B (offline) and trackio at once: the TensorBoard event files hold the loss at steps 1 and
    4; LoRA with a merged copy: the adapter and the merged model each get a card."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "short-cpl"
    recipe = _cpl_recipe(
        tmp_path,
        tiny_model_dir,
        out,
        "max_steps: 4, logging_steps: 5, per_device_train_batch_size: 4, save_strategy: 'no', "
        "learning_rate: 1.0e-3, report_to: [tensorboard, wandb, trackio]",
        extra=", lora: {r: 4, alpha: 8, target_modules: [q_proj, v_proj], save_merged: true}",
    )
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "TRACKIO_DIR": str(tmp_path / "trackio"),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("WANDB_DIR", None)
    env.pop("WANDB_PROJECT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "posttrain", "train", str(recipe)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    history = json.loads((out / "log_history.json").read_text())
    assert [row["step"] for row in history if "loss" in row] == [1, 4]
    summary = json.loads((out / "run_summary.json").read_text())
    assert "loss" in summary["first"] and "loss" in summary["last"]
    assert any(line.startswith("loss ") and "→" in line for line in proc.stdout.splitlines())

    # TensorBoard: event files under output_dir/runs with the loss scalars of the logged steps
    events = list((out / "runs").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"]
    losses = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert sorted(losses) == [1, 4]
    assert losses[1] == pytest.approx(history[0]["loss"], rel=1e-5)
    # W&B offline: a run folder under output_dir, named after it, in the posttrain project
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    # trackio: a local project database named posttrain
    assert list((tmp_path / "trackio").glob("posttrain*"))

    adapter_card = (out / "README.md").read_text()
    meta = _front_matter(adapter_card)
    assert meta["library_name"] == "peft" and "cpl" in meta["tags"] and "lora" in meta["tags"]
    assert "base_model" not in meta  # a local directory has no hub id, and no path is written instead
    assert str(tiny_model_dir) not in adapter_card.split("## Reproduce")[0]
    assert "arxiv.org/abs/2310.13639" in adapter_card
    assert "posttrain train" in adapter_card and "learning_rate: 0.001" in adapter_card
    assert "transformers " in adapter_card and "peft " in adapter_card
    assert "| loss |" in adapter_card
    merged_card = (out / "merged" / "README.md").read_text()
    assert _front_matter(merged_card)["library_name"] == "transformers"
    assert "merged" in merged_card


@pytest.mark.integration
def test_short_drpo_run_summary_and_card_show_the_reward(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """A DRPO run shorter than logging_steps: the summary shows the reward and its per-function component
    besides accuracy, the curves plot them, and the card is posttrain's (the DRPO paper, not TRL's GRPO
    card with "fine-tuned version of [None]")."""
    from posttrain.train import reward_keys, run_train

    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    problems = tmp_path / "sums.jsonl"
    problems.write_text(
        "".join(json.dumps({"problem": f"{i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(8))
    )
    out = tmp_path / "short-drpo"
    recipe = tmp_path / "drpo.yaml"
    recipe.write_text(
        f"""# Launch: posttrain train {recipe}
method: drpo
output_dir: {out}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data: {{train: {{path: {problems}, format: math}}}}
drpo: {{num_generations: 4, max_completion_length: 6, rewards: ["drpo_test_rewards:parity"], allow_custom_rewards: true}}
training: {{max_steps: 3, per_device_train_batch_size: 8, logging_steps: 5, save_strategy: "no",
           report_to: none}}
"""
    )
    summary = run_train(str(recipe), [], progress=False)
    printed = capsys.readouterr().out
    history = json.loads((out / "log_history.json").read_text())
    train_rows = [row for row in history if "loss" in row]
    assert [row["step"] for row in train_rows] == [1, 3]
    assert reward_keys(train_rows) == ["reward", "rewards/parity/mean"]
    for key in ("loss", "reward", "rewards/parity/mean", "accuracy"):
        assert key in summary["last"]
        assert any(line.startswith(f"{key} ") for line in printed.splitlines()), key
    card = (out / "README.md").read_text()
    assert "arxiv.org/abs/2510.04474" in card and "fine-tuned version of" not in card
    assert "drpo" in _front_matter(card)["tags"]
    assert "| reward |" in card


def test_every_trainer_writes_posttrains_card_when_pushed():
    """push_to_hub and TRL's checkpoint saves call create_model_card: every trainer's is posttrain's."""
    from posttrain.model_card import ModelCardMixin
    from posttrain.trainers.cpl_trainer import CPLTrainer
    from posttrain.trainers.drpo_trainer import DRPOTrainer
    from posttrain.trainers.rlbff_trainer import BradleyTerryTrainer, RLBFFTrainer

    for cls in (CPLTrainer, DRPOTrainer, RLBFFTrainer, BradleyTerryTrainer):
        assert cls.create_model_card is ModelCardMixin.create_model_card, cls.__name__


def test_card_base_model_is_a_hub_id_never_a_path(tmp_path):
    from posttrain.model_card import CardContext, base_model_id, build_card
    from posttrain.recipe import load_recipe

    recipe = load_recipe("cpl/quickstart", ["model.lora={r: 8}"])
    assert base_model_id(recipe.model) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = build_card(
        CardContext(recipe=recipe, command="posttrain train cpl/quickstart"), [], kind="adapter"
    )
    meta = _front_matter(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "posttrain" in meta["tags"] and meta["pipeline_tag"] == "text-generation"
    assert "No metrics were logged." in card
    for name, expected in (
        ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
        (str(tmp_path), None),
        ("./outputs/run", None),
        ("model.gguf", None),
    ):
        assert base_model_id(recipe.model.model_copy(update={"name_or_path": name})) == expected
    hub = load_recipe("cpl/qwen2.5-0.5b-hh-harmless")
    assert _front_matter(build_card(CardContext(recipe=hub, command="x"), [], kind="model"))["datasets"] == [
        "Anthropic/hh-rlhf"
    ]


def test_a_tracker_that_is_not_installed_is_refused_naming_its_extra(monkeypatch):
    from transformers.integrations import integration_utils

    from posttrain import tracking
    from posttrain.recipe import check_report_to

    assert tracking.install_hint("tensorboard") == "pip install 'posttrain[tensorboard]'"
    assert tracking.install_hint("mlflow") is None
    monkeypatch.setattr(integration_utils, "get_available_reporting_integrations", lambda: ["tensorboard"])
    with pytest.raises(
        UserError, match=r"tracker 'wandb' is not installed \(pip install 'posttrain\[wandb\]'\)"
    ):
        check_report_to(["tensorboard", "wandb"], "r.yaml")
    with pytest.raises(UserError, match=r"tracker 'mlflow' is not installed \(pip install mlflow\)"):
        check_report_to("mlflow", "r.yaml")
    for ok in ("tensorboard", ["tensorboard"], "none", "all", None):  # installed or off
        check_report_to(ok, "r.yaml")


def test_run_defaults_name_the_run_after_the_output_folder(tmp_path, monkeypatch):
    from transformers import TrainingArguments

    from posttrain.tracking import apply_run_defaults

    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    args = TrainingArguments(str(tmp_path / "cpl-quickstart"), report_to=["trackio"])
    apply_run_defaults(args)
    assert args.run_name == "cpl-quickstart" and args.project == "posttrain"
    named = TrainingArguments(str(tmp_path / "x"), report_to=["trackio"], run_name="mine", project="p")
    apply_run_defaults(named)
    assert named.run_name == "mine" and named.project == "p"


def test_only_the_main_process_prints_bars_and_warnings():
    """quiet_unless_main on a non-first rank: no tqdm bar, no warning, no transformers warning."""
    code = """
import os, warnings, logging
from posttrain.train import quiet_unless_main
assert quiet_unless_main() is False
from tqdm.auto import tqdm
for _ in tqdm(range(3), desc="BAR"):
    pass
warnings.warn("WARNED")
import transformers
transformers.utils.logging.get_logger("transformers").warning("TFWARN")
logging.getLogger("posttrain.models").warning("PTWARN")
print("done")
"""
    for rank, quiet in (("1", True), ("0", False)):
        proc = subprocess.run(
            [sys.executable, "-c", code.replace("is False", "is False" if quiet else "is True")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "RANK": rank},
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        for marker in ("BAR", "WARNED", "TFWARN", "PTWARN"):
            assert (marker in proc.stderr) is not quiet, (rank, marker, proc.stderr[-2000:])


@pytest.mark.distributed
def test_two_process_launch_prints_each_bar_and_warning_once(tiny_model_dir, tmp_path):
    """Under accelerate launch (2 CPU processes) the model-loading bar, DeepSpeed's accelerator warning and
    the data report appear once, not once per process."""
    out = tmp_path / "out"
    recipe = _cpl_recipe(
        tmp_path,
        tiny_model_dir,
        out,
        "max_steps: 2, logging_steps: 1, per_device_train_batch_size: 4, save_strategy: 'no', report_to: none",
    )
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    proc = subprocess.run(
        [accelerate, "launch", "--config_file", str(ROOT / "launch" / "cpu_2proc.yaml")]
        + ["--main_process_port", "0", "-m", "posttrain", "train", str(recipe)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "run_summary.json").read_text())["world_size"] == 2
    text = (proc.stdout + proc.stderr).replace("\r", "\n")
    assert len([line for line in text.splitlines() if line.startswith("Loading weights: 100%")]) == 1
    assert text.count("Setting accelerator to CPU") <= 1
    assert text.count("[posttrain] data ") == 1 and text.count("run summary") == 1

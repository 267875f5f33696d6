"""DRPO study: DRPO vs GRPO-LP vs DisCO vs GRPO on held-out pass@1 and the length of correct answers.

Every arm trains the same model on the same task with the same rollout budget (steps, prompts and answers
per step, updates per rollout, learning rate, seed → same problems in the same order); only
``drpo.objective`` differs. The ``base`` arm is the untrained model, evaluated the same way. Each run is
``posttrain train`` on a recipe written from :data:`TASK` and the scale (saved as the run's ``recipe.yaml``),
then the math evaluation (strict grader) on the held-out problems with the run's seed.

The task and its prompt are in one place, :data:`TASK` (``--suffix``, ``--system-prompt``, ``--train``,
``--heldout`` on the command line override it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from posttrain.experiments.runner import Metric, Study

NAME = "drpo-length"
ARMS = ["base", "drpo", "grpo_lp", "disco", "grpo"]  # base = no training

# The task and its prompt: the one place to change them (paths relative to the project root).
TASK: dict[str, Any] = {
    "train": "data/drpo/arithmetic_train.jsonl",
    "heldout": "data/drpo/arithmetic_test.jsonl",
    "format": "math",
    # the quickstart's, used in training and evaluation: showing the boxed form is what makes the 135M model write
    # it (strictly right and finished on 40 training problems × 4 samples: 6.2% at C = 128 vs 1.3% for "Put the
    # final answer in \\boxed{}." at C = 64)
    "prompt_suffix": "Give the final answer as \\boxed{number}. Example: 3 + 4 = 7, so the answer is \\boxed{7}.",
    "system_prompt": None,  # evaluation only: the DRPO recipe has no system-prompt option
    "rewards": ["math_correctness"],  # the strict grader
}

# Per scale: model, trainer settings (the same for every arm) and the held-out evaluation.
SCALES: dict[str, dict[str, Any]] = {
    # tests and smoke checks: one rollout, a handful of held-out samples
    "micro": {
        "model": "embedded:smollm2-135m-instruct",
        "dtype": "float32",
        "drpo": {"num_generations": 4, "max_completion_length": 16, "updates_per_rollout": 1},
        "training": {"per_device_train_batch_size": 4, "max_steps": 1, "learning_rate": 2.0e-5},
        "eval": {"limit": 2, "samples": 2, "max_new_tokens": 16},
    },
    # 4 arms × 3 seeds + 3 base evaluations on 2 CPU cores, ≤ 90 minutes with nothing else running. Rollouts
    # use vLLM's CPU build (colocate, 2 GiB of KV cache): a rollout of 64 answers at C = 128 takes seconds
    # instead of minutes with HF generate
    "cpu": {
        "model": "embedded:smollm2-135m-instruct",
        "dtype": "float32",
        "drpo": {
            "num_generations": 8,
            "max_completion_length": 128,
            "updates_per_rollout": 4,
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_cpu_kv_cache_gb": 2,
        },
        # 2 prompts × 8 answers per step, 4 updates per rollout of 8 prompts: 8 steps = 2 rollouts, 16 problems.
        # bf16 autocast (fp32 master weights) and a bf16 evaluation: this CPU's AMX runs them ~2× faster than
        # fp32; on a CPU without bf16 units use --set training.bf16=false --set eval.dtype=float32
        "training": {
            "per_device_train_batch_size": 16,
            "max_steps": 8,
            "learning_rate": 2.0e-5,
            "bf16": True,
            "use_cpu": True,
        },
        "eval": {"limit": 24, "samples": 4, "max_new_tokens": 128, "dtype": "bfloat16", "batch_size": 96},
    },
    # one GPU: a 0.5B instruct model, more steps and a longer budget, vLLM rollouts (not run here)
    "gpu": {
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "dtype": "bfloat16",
        "drpo": {
            "num_generations": 8,
            "max_completion_length": 512,
            "updates_per_rollout": 4,
            "use_vllm": True,
            "vllm_mode": "colocate",
        },
        # 16 prompts × 8 answers per step, 200 steps
        "training": {
            "per_device_train_batch_size": 128,
            "max_steps": 200,
            "learning_rate": 2.0e-6,
            "bf16": True,
        },
        "eval": {"limit": 100, "samples": 16, "max_new_tokens": 512},
    },
}

# the paper's (and posttrain's) method defaults, the same for every arm
METHOD = {"length_lambda": 0.1, "tau": 10.0, "temperature": 0.6}


def study(
    scale: str = "cpu",
    *,
    arms: list[str] | None = None,
    task: dict[str, Any] | None = None,
    root: Path | None = None,
) -> Study:
    from posttrain.experiments import project_root

    root = root or project_root()
    task = {**TASK, **(task or {})}
    for key in ("train", "heldout"):
        path = Path(task[key])
        task[key] = str(path if path.is_absolute() else root / path)
    config = {"scale": scale, "task": task, "method": METHOD, **SCALES[scale]}
    return Study(
        name=NAME,
        arms=list(arms or ARMS),
        config=config,
        worker="posttrain.experiments.worker",
        metrics=[
            Metric("pass@1", "held-out pass@1 (%)", 100.0, 1),
            Metric("mean_length_correct", "length of correct answers (tokens)", 1.0, 1),
            Metric("mean_length", "mean length (tokens)", 1.0, 1),
            Metric("truncated", "truncated (%)", 100.0, 1),
            Metric("train_accuracy_last", "last logged train accuracy (%)", 100.0, 1),
            Metric("step_time_s", "step time (s)", 1.0, 1),
        ],
        plot=plot,
        compare_to=["base", "drpo"],
        compare_metrics=["pass@1", "mean_length_correct", "mean_length"],
        notes=[
            f"Model {config['model']}; task {task['train']} → held-out {task['heldout']} "
            f"(first {config['eval']['limit']} problems × {config['eval']['samples']} samples, "
            f"T = {METHOD['temperature']}, top-p 0.95, ≤ {config['eval']['max_new_tokens']} tokens, strict grader).",
            f"Prompt suffix: {task['prompt_suffix']!r}.",
            f"Same budget per arm: {config['training']['max_steps']} steps of "
            f"{config['training']['per_device_train_batch_size']} answers "
            f"({config['drpo']['num_generations']} per prompt), {config['drpo']['updates_per_rollout']} updates "
            "per rollout; only drpo.objective differs. base = no training (evaluation only, seeded like the runs).",
        ],
    )


def recipe_for(arm: str, seed: int, config: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """The posttrain recipe one run trains (written to the run folder as ``recipe.yaml``)."""
    task = config["task"]
    return {
        "method": "drpo",
        "description": f"{NAME} study: {arm}, seed {seed}, scale {config['scale']}",
        "output_dir": str(output_dir),
        "model": {"name_or_path": config["model"], "dtype": config["dtype"]},
        "data": {"train": {"path": task["train"], "format": task["format"]}},
        "drpo": {
            "objective": arm,
            "rewards": list(task["rewards"]),
            "prompt_suffix": task["prompt_suffix"],
            **config["method"],
            **config["drpo"],
        },
        "training": {
            "lr_scheduler_type": "constant",
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": "none",
            "seed": seed,
            **config["training"],
        },
    }


def _eval(model: str, config: dict[str, Any], seed: int, out_dir: Path) -> dict[str, Any]:
    from posttrain.evaluation.math_eval import MathEvalSettings, evaluate_math

    task, ev = config["task"], config["eval"]
    settings = MathEvalSettings(
        samples=ev["samples"],
        temperature=config["method"]["temperature"],
        top_p=0.95,
        max_new_tokens=ev["max_new_tokens"],
        limit=ev["limit"],
        suffix=task["prompt_suffix"],
        system_prompt=task["system_prompt"],
        seed=seed,
    )
    results = evaluate_math(
        model,
        [task["heldout"]],
        settings=settings,
        out_dir=out_dir,
        progress=False,
        dtype=ev.get("dtype", "auto"),
        batch_size=ev.get("batch_size", 32),
    )
    (bench,) = results["benchmarks"].values()
    return {
        "pass@1": bench["pass@1"],
        "mean_length": bench["mean_length"],
        "mean_length_correct": bench["mean_length_correct"],
        "truncated": bench["truncated"],
        "eval_problems": bench["problems"],
        "eval_samples_per_problem": bench["samples_per_problem"],
    }


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One run, inside the worker subprocess: train (unless ``base``) and evaluate; returns the result."""
    import yaml

    from posttrain.train import run_train

    arm, seed, config = spec["arm"], spec["seed"], spec["config"]
    run_dir = Path(spec["run_dir"])
    metrics: dict[str, Any] = {}
    train: dict[str, Any] = {}
    if arm == "base":
        model = config["model"]
    else:
        model_dir = run_dir / "model"
        recipe_path = run_dir / "recipe.yaml"
        recipe_path.write_text(yaml.safe_dump(recipe_for(arm, seed, config, model_dir), sort_keys=False))
        t0 = time.time()
        summary = run_train(str(recipe_path), [], progress=False)
        history = json.loads((model_dir / "log_history.json").read_text())
        end = next((row for row in reversed(history) if "train_runtime" in row), {})
        steps = summary["steps"]
        accuracies = [row["accuracy"] for row in history if row.get("accuracy") is not None]
        correct_len = [
            row["length/correct_mean"] for row in history if row.get("length/correct_mean") is not None
        ]
        train = {
            "steps": steps,
            "train_runtime_s": end.get("train_runtime"),
            "train_wall_s": round(time.time() - t0, 1),
            "train_accuracy_first": accuracies[0] if accuracies else None,
            "train_accuracy_last": accuracies[-1] if accuracies else None,
            "train_correct_length_last": correct_len[-1] if correct_len else None,
        }
        metrics["train_accuracy_last"] = train["train_accuracy_last"]
        metrics["step_time_s"] = end["train_runtime"] / steps if end.get("train_runtime") and steps else None
        model = str(model_dir)
    metrics.update(_eval(model, config, seed, run_dir / "eval"))
    if arm != "base" and not config.get("keep_models"):
        for weights in (run_dir / "model").glob("*.safetensors"):
            weights.unlink()  # 0.5 GB a run at the CPU scale; the logs, recipe and evaluation stay
    return {"metrics": metrics, "train": train, "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def plot(results: list[dict], summary: dict[str, Any], out: Path) -> Path:
    """Held-out pass@1 vs the mean length of correct answers: one small point per run, the arm's mean with its
    95% t interval on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, arm in enumerate(summary["arms"]):
        color = colors[i % len(colors)]
        rows = [r["metrics"] for r in results if r["arm"] == arm]
        xs = [r.get("mean_length_correct") for r in rows]
        ys = [r.get("pass@1") for r in rows]
        pts = [(x, 100 * y) for x, y in zip(xs, ys) if x is not None and y is not None]
        if pts:
            ax.scatter(*zip(*pts), color=color, alpha=0.35, s=18)
        stats = summary["arms"][arm]["metrics"]
        lx, py = stats["mean_length_correct"], stats["pass@1"]
        if lx["mean"] is None or py["mean"] is None:
            continue
        ax.errorbar(
            lx["mean"],
            100 * py["mean"],
            xerr=lx["half_width"],
            yerr=None if py["half_width"] is None else 100 * py["half_width"],
            fmt="o",
            color=color,
            capsize=4,
            markersize=7,
            label=f"{arm} (n={py['n']})",
        )
    ax.set_xlabel("mean length of correct answers (tokens)")
    ax.set_ylabel("held-out pass@1 (%)")
    ax.set_title(
        "DRPO study: accuracy vs correct-answer length\n(points: runs; markers: mean ± 95% t interval)"
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    path = out / "drpo_length.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def check_inputs(st: Study) -> None:
    from posttrain.errors import UserError

    for key in ("train", "heldout"):
        if not os.path.isfile(st.config["task"][key]):
            raise UserError(f"{NAME}: task file {st.config['task'][key]} not found ({key})")

"""``posttrain train``: recipe → validated config → data → model → trainer → summary.

Order matters for the error contract: the recipe, its files and the data are checked before the model
loads, and the output directory is created only once everything loaded, so a mistake writes nothing.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from pathlib import Path

import yaml
from transformers import TrainerCallback

from posttrain import log
from posttrain.checkpoints import GracefulStop, last_complete_checkpoint, resume_point
from posttrain.errors import IncompleteRun, UserError
from posttrain.evaluation.after_training import run_after_training
from posttrain.methods import get_method
from posttrain.model_card import CardContext, first_and_last, write_card
from posttrain.models import save_merged
from posttrain.recipe import load_recipe
from posttrain.tracking import apply_run_defaults

# fields a resumed run may change (e.g. train longer, log more often); anything else must match the
# recipe the checkpoints were trained with
_RESUMABLE_CHANGES = {
    "training": {
        "max_steps",
        "num_train_epochs",
        "save_steps",
        "save_total_limit",
        "logging_steps",
        "eval_steps",
    },
    "evaluate": None,  # the whole section
}


class LogFirstAndLastStep(TrainerCallback):
    """Log the first and the last step whatever ``logging_steps`` says (unless logging is off), so a run
    shorter than ``logging_steps`` still has a loss, the summary a first and last value, and the curves
    their end points. The first step is TrainingArguments' ``logging_first_step``; the last needs this."""

    def on_step_end(self, args, state, control, **kwargs):
        if args.logging_strategy == "no":
            return control
        if state.global_step == 1 or state.global_step >= state.max_steps or control.should_training_stop:
            control.should_log = True
        return control


def reward_keys(rows: list[dict]) -> list[str]:
    """The reward and its components (one per reward function, ``rewards/NAME/mean``) in RL logs."""
    components = sorted({k for row in rows for k in row if k.startswith("rewards/") and k.endswith("/mean")})
    return (["reward"] if any("reward" in row for row in rows) else []) + components


def _plot_curves(log_history: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_rows = [row for row in log_history if "loss" in row]
    curves = (
        "loss",
        *reward_keys(train_rows),
        "margin",
        "accuracy",
        "bc_loss",
        "length/correct_mean",
        "length/incorrect_mean",
    )
    keys = [k for k in curves if any(row.get(k) is not None for row in log_history)]
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        rows = [(row["step"], row[key]) for row in log_history if row.get(key) is not None and "step" in row]
        ax.plot([s for s, _ in rows], [v for _, v in rows], marker=".")
        evals = [(row["step"], row[f"eval_{key}"]) for row in log_history if f"eval_{key}" in row]
        if evals:
            ax.plot([s for s, _ in evals], [v for _, v in evals], marker="o", label="eval")
            ax.legend()
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def summary_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *(f"{k.ljust(width)} | {v}" for k, v in rows), line])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def cpu_multiprocess_overrides() -> list[str]:
    """Under ``accelerate launch`` with several processes and no GPU, run them on CPU over gloo.

    accelerate's ``--cpu`` selects its single-process launcher, so the CPU configs (launch/cpu_2proc*.yaml)
    use the torchrun launcher and each process opts into CPU here, before any TrainingArguments exists
    (its ``__post_init__`` sets up devices). Under DeepSpeed the process group must use gloo: otherwise the
    Trainer sees one process while DeepSpeed sees two and stops with "train_batch_size is not equal to
    micro_batch_per_gpu * gradient_acc_step * world_size". Returns recipe overrides to apply.
    """
    import torch

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not torch.cuda.is_available():
        raise UserError(
            "FSDP needs GPUs: accelerate enables FSDP only on GPU-class devices, and on CPU it would silently "
            "run plain data parallelism instead; on CPU use launch/cpu_2proc.yaml (DDP) or "
            "launch/cpu_2proc_zero3.yaml (DeepSpeed ZeRO-3, sharded)"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return []
    if torch.cuda.is_available():
        return []
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return ["training.ddp_backend=gloo"]
    os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    return []


def shutdown_distributed() -> None:
    """Destroy the process group (if any) while the interpreter is still whole.

    A process that exits with a live gloo group can abort (SIGABRT) during interpreter finalisation: gloo's
    worker threads still hold work objects whose tensors need the GIL to be freed. It is timing-dependent,
    so it showed up as a rare failure of the 2-process CPU runs (SIGABRT, "terminate called without an
    active exception", in a rank that exited while the other still held its connections). ``run_train``
    therefore calls this on every rank right after a barrier; the CLI calls it again on the way out (a no-op
    by then, but it covers a run that failed part-way).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def quiet_unless_main() -> bool:
    """Under a multi-process launch, silence progress bars and warnings on every process but the first, so
    each prints once (errors still print everywhere). Returns whether this is the main process."""
    if log.is_main_process():
        return True
    import logging
    import warnings

    import datasets
    import transformers

    warnings.simplefilter("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    for name in ("posttrain", "accelerate", "trl", "peft", "deepspeed", "DeepSpeed", "torch", "vllm"):
        # a filter, not only the level: DeepSpeed sets its logger's level when it is imported (later)
        logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger(name).addFilter(lambda record: record.levelno >= logging.ERROR)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    import functools

    import tqdm

    # every other tqdm bar (data loading, evaluation, libraries), unless a caller passes disable itself
    tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)
    return False


def _changed_fields(before: dict, now: dict, resumable: dict | None = None) -> list[str]:
    changed = []
    for section in sorted(set(before) | set(now)):
        allowed = (_RESUMABLE_CHANGES if resumable is None else resumable).get(section, set())
        if allowed is None:
            continue
        a, b = before.get(section), now.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [
                f"{section}.{k}" for k in sorted(set(a) | set(b)) if k not in allowed and a.get(k) != b.get(k)
            ]
        elif a != b:
            changed.append(section)
    return changed


def _saved_and_current(out: Path, recipe) -> tuple[dict, dict] | None:
    """The recipe saved in ``out`` and this one, both without what does not touch training."""
    saved = out / "recipe.yaml"
    if not saved.is_file():
        return None
    try:
        before = yaml.safe_load(saved.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        before = {}
    before = before if isinstance(before, dict) else {}
    now = recipe.to_dict()
    for config in (before, now):  # whether a merged copy is written does not touch training
        lora = (config.get("model") or {}).get("lora") if isinstance(config.get("model"), dict) else None
        if isinstance(lora, dict):
            lora.pop("save_merged", None)
    return before, now


def _check_resumable(out: Path, recipe) -> None:
    """Checkpoints in ``out`` must come from this recipe (up to :data:`_RESUMABLE_CHANGES`)."""
    pair = _saved_and_current(out, recipe)
    changed = _changed_fields(*pair) if pair is not None else []
    if changed:
        raise UserError(
            f"{out} holds checkpoints of a different recipe ({', '.join(changed)} changed); resume with the "
            "same recipe, or set output_dir to a new folder, or pass --overwrite to start over there"
        )


# what a run writes besides checkpoints and the model (removed by --overwrite)
_RUN_FILES = ("recipe.yaml", "run_summary.json", "log_history.json", "training_curves.png")


def _check_previous_run(out: Path, recipe, *, overwrite: bool, explicit_resume: bool) -> None:
    """Before the model loads: ``out`` may hold checkpoints of this recipe (resumed), a run of this same
    recipe (rerun), or nothing of ours; a run of another recipe — finished or stopped before its first
    checkpoint — is refused unless ``--overwrite``."""
    if overwrite or explicit_resume:
        return
    if last_complete_checkpoint(out) is not None:
        _check_resumable(out, recipe)
        return
    pair = _saved_and_current(out, recipe)
    changed = (
        _changed_fields(*pair, resumable={"evaluate": None, "description": None, "output_dir": None})
        if pair is not None
        else []
    )
    if changed:
        state = (
            "a finished run" if (out / "run_summary.json").is_file() else "an unfinished run (no checkpoint)"
        )
        raise UserError(
            f"output_dir {out}: holds {state} of a different recipe ({', '.join(changed)} changed); set "
            "output_dir to a new folder, or pass --overwrite to replace it"
        )


def _clear_previous_run(out: Path) -> None:
    """``--overwrite``: the previous run's checkpoints and reports go before this run writes its own."""
    import shutil

    for path in sorted(out.glob("checkpoint-*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    for name in _RUN_FILES:
        (out / name).unlink(missing_ok=True)


def run_train(
    recipe_name: str, overrides: list[str], *, progress: bool = True, overwrite: bool = False
) -> dict:
    """Train a recipe; returns the run summary (also written to ``output_dir/run_summary.json``).
    ``overwrite``: replace a run of another recipe in ``output_dir`` (refused otherwise)."""
    progress = quiet_unless_main() and progress
    recipe = load_recipe(recipe_name, [*overrides, *cpu_multiprocess_overrides()])
    method = get_method(recipe.method)
    args = method.build_config(recipe)
    out = Path(args.output_dir)
    _check_previous_run(out, recipe, overwrite=overwrite, explicit_resume=bool(args.resume_from_checkpoint))
    start = time.time()
    trainer, reports = method.setup()(recipe, args, progress=progress)
    main = trainer.is_world_process_zero()
    card = CardContext(
        recipe=recipe,
        command=" ".join(["posttrain", "train", shlex.quote(recipe_name), *map(shlex.quote, overrides)]),
        data=[r.summary() for r in reports],
    )
    trainer.posttrain_card = card  # the card push_to_hub and TRL's checkpoint saves write
    if main:
        for report in reports:
            log.info(f"data {report.summary()}")
    if overwrite and not args.resume_from_checkpoint:
        if main:
            _clear_previous_run(out)
        resume = None
    else:
        resume = resume_point(out, args.resume_from_checkpoint, main_process=main)
    if main and resume is not None:
        log.info(f"resuming from {resume} (rerun of an interrupted run)")
    stop = GracefulStop(every=getattr(trainer, "checkpoint_every", 1))
    trainer.add_callback(stop)
    trainer.add_callback(LogFirstAndLastStep())
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.yaml").write_text(
            f"# resolved from {recipe.source}\n" + yaml.safe_dump(recipe.to_dict(), sort_keys=False)
        )
    apply_run_defaults(args)
    result = trainer.train(resume_from_checkpoint=resume)
    if stop.stopped_at is not None and trainer.state.global_step < trainer.state.max_steps:
        trainer.accelerator.wait_for_everyone()
        shutdown_distributed()
        raise IncompleteRun(
            f"stopped by a signal after step {stop.stopped_at} of {trainer.state.max_steps}; checkpoint saved in "
            f"{out / f'checkpoint-{stop.stopped_at}'}; rerun the same command to resume"
        )
    trainer.save_model()
    # Every rank is done with collectives: take the process group down together, before the main process
    # writes reports or evaluates (which may take longer than any collective timeout).
    trainer.accelerator.wait_for_everyone()
    shutdown_distributed()
    # Training's DeepSpeed config stays registered with transformers; a ZeRO-3 one would make every later
    # from_pretrained in this process (merging LoRA, evaluation) build a partitioned model inside
    # deepspeed.zero.Init, with the process group already gone.
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    history = trainer.state.log_history
    train_logs = [row for row in history if "loss" in row]
    first, last = first_and_last(train_logs)  # per metric: RL metrics are not logged on every step
    summary = {
        "method": recipe.method,
        "model": recipe.model.name_or_path,
        "output_dir": str(out),
        "steps": trainer.state.global_step,
        "train_runtime_s": round(time.time() - start, 1),
        "train_loss": result.training_loss,
        "first": {k: first[k] for k in first if k not in ("epoch", "step")},
        "last": {k: last[k] for k in last if k not in ("epoch", "step")},
        "data": [r.summary() for r in reports],
        "world_size": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type.value),
    }
    lora = recipe.model.lora
    if main and lora is not None and lora.save_merged:
        # after the process group is down, so it is the same on every engine: the trainer has gathered and
        # saved the adapter (adapter-only) in `out`; merge it into a fresh base model on this process
        merged = save_merged(recipe.model, out)
        summary["merged"] = str(merged)
        log.info(f"merged model (base + adapter, loadable without PEFT) saved to {merged}")
    if main and recipe.evaluate is not None:
        summary["evaluate"] = run_after_training(recipe.evaluate, out)
    if main:
        card.summary = summary
        kind = "adapter" if lora is not None else "model"
        summary["model_card"] = str(write_card(out, card, history, kind=kind))
        if "merged" in summary:
            write_card(summary["merged"], card, history, kind="merged")
        (out / "run_summary.json").write_text(json.dumps(summary, indent=2))
        (out / "log_history.json").write_text(json.dumps(history, indent=2))
        plotted = _plot_curves(history, out / "training_curves.png")
        rows = [
            ("method", recipe.method),
            ("model", recipe.model.name_or_path),
            ("steps", str(summary["steps"])),
        ]
        shown = (
            "loss",
            *reward_keys(train_logs),
            "accuracy",
            "margin",
            "logps/chosen",
            "logps/rejected",
            "bc_loss",
            "length/correct_mean",
        )
        for key in shown:
            if first.get(key) is not None or last.get(key) is not None:
                rows.append(
                    (key, f"{_fmt(first.get(key, float('nan')))} → {_fmt(last.get(key, float('nan')))}")
                )
        if not train_logs:  # logging off (logging_strategy: no): the mean over the run is all there is
            rows.append(("loss (mean over the run)", _fmt(result.training_loss)))
        evaluated = summary.get("evaluate", {})
        for key in ("binary_accuracy", "pairwise_accuracy"):
            if key in evaluated.get("principles", {}):
                rows.append((f"held-out {key}", _fmt(evaluated["principles"][key])))
        if "average" in evaluated.get("math", {}):
            average = evaluated["math"]["average"]
            rows.append(("held-out pass@1", _fmt(average["pass@1"])))
            rows.append(("held-out mean length", _fmt(average["mean_length"])))
        if "overall" in evaluated.get("rm_bench", {}):
            # in % as RM-Bench reports it (its table and chart); run_summary.json keeps the fraction
            avg = evaluated["rm_bench"]["overall"]["avg"]
            rows.append(("RM-Bench overall avg", f"{100 * avg:.1f} %" if math.isfinite(avg) else str(avg)))
        rows.append(("runtime", f"{summary['train_runtime_s']} s"))
        rows.append(("saved", str(out)))
        if plotted:
            rows.append(("curves", str(out / "training_curves.png")))
        log.emit("\n[posttrain] run summary (first → last logged value)\n" + summary_table(rows))
    return summary

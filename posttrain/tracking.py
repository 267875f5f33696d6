"""Experiment trackers behind ``training.report_to``: TensorBoard, Weights & Biases, trackio.

Each is an optional extra (``pip install 'posttrain[tensorboard]'``); :data:`TRACKERS` is the one place
that maps a ``report_to`` name to the module it needs and the extra that installs it
(:func:`install_hint`), which ``posttrain validate`` names when a requested tracker is not installed
(``posttrain.recipe.check_report_to``), before any model loads.

Run defaults (:func:`apply_run_defaults`): the run is named after the output folder (``cpl-quickstart``)
unless ``training.run_name`` is set; the W&B and trackio project is ``posttrain`` unless
``training.project`` (or ``WANDB_PROJECT``) says otherwise; W&B writes its files under ``output_dir``
unless ``WANDB_DIR`` is set. Offline W&B: ``WANDB_MODE=offline`` (sync later with ``wandb sync``).
"""

from __future__ import annotations

import os
from pathlib import Path

# report_to name -> (module that must be importable, posttrain extra that installs it)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "trackio": ("trackio", "trackio"),
}

DEFAULT_PROJECT = "posttrain"


def requested(report_to) -> list[str]:
    """The tracker names of a ``report_to`` value (a string or a list; "none" and "all" ask for none here:
    "all" means whichever are installed)."""
    if report_to is None:
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    return [str(n) for n in names if str(n) not in ("none", "all")]


def install_hint(tracker: str) -> str | None:
    """How to install a tracker of :data:`TRACKERS` (``pip install 'posttrain[wandb]'``), else None."""
    if tracker not in TRACKERS:
        return None
    return f"pip install 'posttrain[{TRACKERS[tracker][1]}]'"


def apply_run_defaults(args) -> None:
    """Name the run after the output folder and default the W&B / trackio project to ``posttrain``."""
    if not requested(args.report_to):
        return
    if not args.run_name or args.run_name == args.output_dir:
        args.run_name = Path(args.output_dir).name
    if getattr(args, "project", None) in (None, "huggingface"):  # TrainingArguments' default
        args.project = os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT)
    if "wandb" in requested(args.report_to):
        os.environ.setdefault("WANDB_PROJECT", args.project)
        os.environ.setdefault("WANDB_DIR", str(Path(args.output_dir)))
        Path(os.environ["WANDB_DIR"]).mkdir(parents=True, exist_ok=True)

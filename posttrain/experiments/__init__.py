"""Studies that test the papers' claims: arms × seeds, resumable, with 95% intervals and a plot.

    python -m posttrain.experiments drpo-length [--scale micro|cpu|gpu] [--seeds 3] [--out DIR] [--dry-run]
    python -m posttrain.experiments cpl-hh [--scale micro|cpu|gpu] [--seeds 2] [--out DIR] [--hh PATH] [--dry-run]

On top of the library (layer of the CLI): it imports posttrain's public functions (``posttrain.train.run_train``,
the evaluators, the data adapters, TRL's trainers) and nothing in the library imports it. See
docs/experiments.md.
"""

from __future__ import annotations

from pathlib import Path


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """``../shared`` beside the project root (benchmark and dataset copies; never copied into the repo)."""
    return project_root().parent / "shared"

"""``posttrain train RECIPE [key=value ...]``: train a recipe (also under ``accelerate launch -m posttrain``)."""

from __future__ import annotations

import argparse
import os
import sys


def register(sub) -> None:
    train = sub.add_parser("train", help="train a recipe")
    train.add_argument("recipe", help="recipe file, or a bundled recipe name such as cpl/quickstart")
    train.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. training.max_steps=10")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run of another recipe in output_dir (its checkpoints and reports); refused otherwise",
    )
    train.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    from posttrain.train import run_train, shutdown_distributed

    try:
        run_train(ns.recipe, ns.overrides, overwrite=ns.overwrite)
    finally:
        shutdown_distributed()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A launched worker that is done (outputs written, process group destroyed) leaves without the
        # interpreter's teardown: there, a C++ thread left joinable by the distributed stack can still
        # abort the process ("terminate called without an active exception", seen about 1 in 20 2-process
        # CPU runs), which would turn a finished run into a failed launch.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0

"""``posttrain validate RECIPE [key=value ...]``: check a recipe without loading any model."""

from __future__ import annotations

import argparse

from posttrain import log


def register(sub) -> None:
    validate = sub.add_parser("validate", help="check a recipe without loading any model")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*")
    validate.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    from posttrain.recipe import load_recipe

    recipe = load_recipe(ns.recipe, ns.overrides)
    log.emit(f"ok: {recipe.source} ({recipe.method}, model {recipe.model.name_or_path})")
    return 0

"""``posttrain recipes``: the bundled recipes, one line each (name, method, description)."""

from __future__ import annotations

import argparse

from posttrain import log


def register(sub) -> None:
    recipes = sub.add_parser("recipes", help="list bundled recipes")
    recipes.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    from posttrain.errors import UserError
    from posttrain.paths import recipes_dir
    from posttrain.recipe import read_yaml

    root = recipes_dir()
    paths = sorted(root.rglob("*.yaml"))
    width = max((len(str(p.relative_to(root).with_suffix(""))) for p in paths), default=0)
    for path in paths:
        try:
            data = read_yaml(path)
        except UserError:
            continue
        name = str(path.relative_to(root).with_suffix(""))
        log.emit(f"{name.ljust(width)}  [{data.get('method', '?')}] {data.get('description', '')}")
    return 0

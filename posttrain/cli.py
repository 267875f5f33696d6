"""Command line: ``posttrain train|validate|recipes``.

Also runs as ``python -m posttrain`` and under ``accelerate launch [--config_file launch/X.yaml] -m posttrain``.
User mistakes print one ``error:`` line and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys

from posttrain.errors import UserError

EXIT_USAGE = 2


def _cmd_train(ns: argparse.Namespace) -> int:
    from posttrain.train import run_train

    run_train(ns.recipe, ns.overrides)
    return 0


def _cmd_validate(ns: argparse.Namespace) -> int:
    from posttrain.recipe import load_recipe

    recipe = load_recipe(ns.recipe, ns.overrides)
    print(f"ok: {recipe.source} ({recipe.method}, model {recipe.model.name_or_path})")
    return 0


def _cmd_recipes(ns: argparse.Namespace) -> int:
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
        print(f"{name.ljust(width)}  [{data.get('method', '?')}] {data.get('description', '')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posttrain", description="LLM post-training: CPL, DRPO, RLBFF.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a recipe")
    train.add_argument("recipe", help="recipe file, or a bundled recipe name such as cpl/quickstart")
    train.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. training.max_steps=10")
    train.set_defaults(func=_cmd_train)

    validate = sub.add_parser("validate", help="check a recipe without loading any model")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*")
    validate.set_defaults(func=_cmd_validate)

    recipes = sub.add_parser("recipes", help="list bundled recipes")
    recipes.set_defaults(func=_cmd_recipes)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return ns.func(ns)
    except UserError as exc:
        # One line, as promised: pydantic (several errors) and TrainingArguments messages span lines.
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

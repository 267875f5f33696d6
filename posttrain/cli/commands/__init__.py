"""One module per ``posttrain`` command, each with ``register(subparsers)`` (its flags, ``func`` set to the
function that runs it) and that function (``run(ns) -> exit code``). A group (``eval``, ``principles``)
registers its own subcommands. Command modules import the library lazily, inside ``run``, so that
``posttrain --help`` and a mistyped flag answer without loading torch."""

from __future__ import annotations

from posttrain.cli.commands import eval as evaluate
from posttrain.cli.commands import principles, recipes, score, train, validate, vllm_serve

COMMANDS = (
    train,
    validate,
    recipes,
    score,
    evaluate,
    principles,
    vllm_serve,
)  # the order of `posttrain --help`

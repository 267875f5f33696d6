"""``posttrain eval BENCHMARK``: one module per benchmark, each registering its subcommand(s)."""

from __future__ import annotations

from posttrain.cli.commands.eval import math_eval, mt_bench, principles, rm_bench

BENCHMARKS = (rm_bench, principles, math_eval, mt_bench)  # the order of `posttrain eval --help`


def register(sub) -> None:
    evaluate = sub.add_parser("eval", help="evaluate a model on a benchmark")
    benches = evaluate.add_subparsers(dest="benchmark", required=True)
    for module in BENCHMARKS:
        module.register(benches)

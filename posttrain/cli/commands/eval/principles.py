"""``posttrain eval principles``: held-out accuracy of a principle RM on principle records, optionally against
a baseline RM (paired difference with a bootstrap interval)."""

from __future__ import annotations

import argparse
from pathlib import Path

from posttrain import log
from posttrain.cli.common import add_rm_args, load_rm, write_run_file
from posttrain.errors import UserError


def register(benches) -> None:
    principles = benches.add_parser("principles", help="held-out accuracy on principle records")
    add_rm_args(principles)
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
    principles.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
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
    run_info = {
        "model": ns.model,
        "form": ns.form,
        "baseline": ns.baseline,
        "data": ns.data,
        "limit": ns.limit,
    }
    if ns.out:
        out = Path(ns.out)
        outputs = [out / name for name in ("principle_eval.json", SCORES_FILE, "baseline")]
        check_out(
            out, run_info, overwrite=ns.overwrite, outputs=outputs, what="principle results of another run"
        )
    result = evaluate_principles(load_rm(ns), records, source=ns.data)
    result["model"] = ns.model
    summaries = {"model": result}
    if ns.baseline:
        base = evaluate_principles(load_rm(ns, ns.baseline), records, source=ns.data)
        base["model"] = ns.baseline
        summaries["baseline"] = base
        result["vs_baseline"] = {"baseline": ns.baseline, **compare(result["scored"], base["scored"])}
    log.emit(f"model: {ns.model}" + (f"\nbaseline: {ns.baseline}" if ns.baseline else ""))
    log.emit(format_table(summaries, {"model − baseline": result["vs_baseline"]} if ns.baseline else None))
    if ns.out:
        log.emit(f"written {write_results(result, ns.out)}")
        if ns.baseline:
            log.emit(f"written {write_results(summaries['baseline'], Path(ns.out) / 'baseline')}")
        write_run_file(ns.out, run_info)
    return 0

"""``posttrain score``: score responses against principles with a principle RM (one JSONL line per record).

The scoring itself is :mod:`posttrain.evaluation.scoring`; here: the flags, and every check made before the
model loads (the output path, the records and their principles)."""

from __future__ import annotations

import argparse
from pathlib import Path

from posttrain import log
from posttrain.cli.common import add_rm_args, load_rm
from posttrain.errors import UserError


def register(sub) -> None:
    score = sub.add_parser("score", help="score responses against principles with a principle RM")
    add_rm_args(score)
    score.add_argument("--input", required=True, help="JSONL with context (or prompt) and response")
    score.add_argument("--principle", action="append", help="principle (repeatable); default: the record's")
    score.add_argument("--out", required=True, help="output JSONL, one line per input record")
    score.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    from posttrain.data.sources import read_local
    from posttrain.evaluation.scoring import scoring_rows, write_scores
    from posttrain.jsonl import check_out

    out = Path(ns.out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a .jsonl file path")
    check_out(out.parent, {}, overwrite=True)  # not under a file, creatable
    records = read_local(ns.input)
    if not records:
        raise UserError(f"--input {ns.input}: no records to score")
    rows = scoring_rows(records, ns.principle, source=ns.input)
    rm = load_rm(ns)
    write_scores(rm, rows, out)
    log.emit(f"scored {len(rows)} records × principles with {ns.model} ({rm.form}) → {out}")
    return 0

"""Score records with a principle RM: one JSONL line per record, one reward (and P(Yes)) per principle.

What ``posttrain score`` runs. :func:`scoring_rows` checks every record before any model loads (a context, a
string response, at least one principle); :func:`write_scores` scores them and writes the file atomically
(a finished file or none). The RM is anything with ``score(context, response, principles, return_p_yes=True)``
and ``form`` (:class:`posttrain.rewards.principle.PrincipleRewardModel`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.errors import UserError

CONTEXT_KEYS = ("context", "prompt", "messages")


@dataclass
class ScoringRow:
    record: dict[str, Any]
    context: Any  # a string or chat messages
    principles: list[str]


def scoring_rows(records: list[dict], principles: list[str] | None, *, source: str) -> list[ScoringRow]:
    """The records to score, each with its principles (``principles`` for all, else the record's own);
    a record that cannot be scored is a ``UserError`` naming it (``source: record N``)."""
    rows = []
    for i, rec in enumerate(records):
        where = f"{source}: record {i + 1}"
        context = next((rec[k] for k in CONTEXT_KEYS if rec.get(k) is not None), None)
        if context is None or not isinstance(rec.get("response"), str):
            raise UserError(f"{where}: needs 'context' (or 'prompt') and a string 'response'")
        chosen = principles or rec.get("principle")
        if not chosen:
            raise UserError(f"{where}: no principle: pass --principle or give the record a 'principle' field")
        rows.append(ScoringRow(rec, context, [chosen] if isinstance(chosen, str) else list(chosen)))
    return rows


def write_scores(rm, rows: list[ScoringRow], out: str | Path, *, progress: bool = True) -> Path:
    """Score ``rows`` with ``rm`` into the JSONL file ``out``: ``index``, ``id`` (when the record has one),
    ``principles``, ``rewards`` and ``p_yes`` (None for a Bradley-Terry RM). Written to ``OUT.tmp`` and
    renamed at the end: a failure (or Ctrl-C) leaves neither a half-written file nor the temporary one."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    try:
        with tmp.open("w") as fh:
            for i, row in enumerate(tqdm(rows, desc="scoring", disable=not progress)):
                rewards, p_yes = rm.score(
                    row.context, row.record["response"], row.principles, return_p_yes=True
                )
                line = {"index": i, **({"id": row.record["id"]} if "id" in row.record else {})}
                line["principles"] = row.principles
                line["rewards"] = rewards
                line["p_yes"] = p_yes if rm.form != "bradley_terry" else None
                fh.write(json.dumps(line) + "\n")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out

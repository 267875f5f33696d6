"""Prompts for online RL with a learned reward (RLBFF's alignment step): format ``prompts``.

Records carry the conversation to answer as ``prompt`` (a string or a message list) or ``context`` (the
RLBFF/HelpSteer3 name: a message list or a string), plus any columns the reward functions read — for a
principle RM, ``principle`` (a string, or a list of principles whose rewards are averaged). The policy
sees only the prompt; every other column reaches the reward functions (TRL passes dataset columns to
``reward_funcs`` as keyword arguments), which is how the principle stays hidden from the policy.

Principle records (``context, response, principle, fulfilment``) work unchanged: ``response`` and
``fulfilment`` are dropped (they describe someone else's answer), and identical (prompt, principle) rows
are kept once.
"""

from __future__ import annotations

import json
from typing import Any

from posttrain.data.preference import DropReport, _Drop
from posttrain.data.sources import read_source
from posttrain.errors import UserError

# columns of principle/preference records that describe other answers, not the prompt
_NOT_FOR_REWARDS = ("response", "fulfilment", "chosen", "rejected", "response1", "response2")


def _messages(value: Any, where: str) -> list[dict]:
    if isinstance(value, str):
        if not value.strip():
            raise _Drop("empty prompt")
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        if any("role" not in m or "content" not in m for m in value):
            raise UserError(f"{where}: every message needs 'role' and 'content'")
        if value[-1]["role"] != "user":
            raise UserError(f"{where}: the conversation must end with a user turn to answer")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise UserError(f"{where}: 'prompt'/'context' must be a string or a list of messages")


def load_prompt_split(source, *, system_prompt: str | None = None, report: DropReport | None = None):
    """A ``datasets.Dataset`` with a conversational ``prompt`` column and the records' other columns
    (see the module docstring). ``source``: a recipe ``DataSource`` with ``format: prompts``."""
    import datasets

    records, label = read_source(source)
    report = report if report is not None else DropReport(source=label)
    report.source, report.read = label, len(records)
    rows, seen = [], set()
    for i, rec in enumerate(records):
        where = f"{label}: record {i + 1}"
        key = "prompt" if "prompt" in rec else "context" if "context" in rec else None
        if key is None:
            present = ", ".join(sorted(rec)) or "none"
            raise UserError(f"{where}: missing field 'prompt' (or 'context'); fields present: {present}")
        try:
            messages = _messages(rec[key], where)
        except _Drop as drop:
            report.drop(drop.reason)
            continue
        if system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}, *messages]
        row = {k: v for k, v in rec.items() if k not in (key, "prompt", "context", *_NOT_FOR_REWARDS)}
        row["prompt"] = messages
        identity = json.dumps(row, sort_keys=True, ensure_ascii=False)
        if identity in seen:
            report.drop("duplicate prompt")
            continue
        seen.add(identity)
        rows.append(row)
    report.kept = len(rows)
    if not rows:
        raise UserError(f"{label}: no usable prompts")
    columns = sorted({k for row in rows for k in row})
    missing = [c for c in columns if any(c not in row for row in rows)]
    if missing:
        raise UserError(f"{label}: column(s) {', '.join(missing)} missing from some records")
    return datasets.Dataset.from_dict({c: [row[c] for row in rows] for c in columns})

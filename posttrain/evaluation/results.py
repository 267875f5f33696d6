"""Reading an evaluator's ``results.json`` back (for plots that compare runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from posttrain.errors import UserError

RESULTS_FILE = "results.json"


def read_results(path: str | os.PathLike, *, command: str, key: str, kind: str) -> dict[str, Any]:
    """``results.json`` of a result folder written by ``posttrain eval <command> --out`` (or the file
    itself); it must be a JSON object holding ``key`` (else a :class:`UserError` saying it is not ``kind``)."""
    p = Path(path)
    file = p / RESULTS_FILE if p.is_dir() else p
    if not file.is_file():
        raise UserError(f"{path}: no {RESULTS_FILE} (a folder written by `posttrain eval {command} --out`)")
    try:
        results = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{file}: invalid JSON ({exc.msg})") from None
    if not isinstance(results, dict) or key not in results:
        raise UserError(f"{file}: not {kind} (no '{key}')")
    return results

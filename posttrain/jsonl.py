"""Runs that can be killed and rerun: JSON Lines records appended (and flushed) as they finish and read
back with the torn last line of a killed write ignored, and the output folder's ``run.json`` that a rerun
must match. The evaluators and the principle extraction resume this way."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from posttrain.errors import UserError

RUN_FILE = "run.json"


def read_jsonl(path: Path, *, torn_ok: bool = True) -> list[dict]:
    """Records of a JSONL file; a torn last line (a run killed mid-write) is ignored, any other bad line is
    a :class:`UserError` naming the file and line. ``torn_ok=False`` for input files (nobody appends to
    them, so a bad last line is a mistake too)."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if torn_ok and number == len(lines):  # no newline after it: the write never finished
                continue
            raise UserError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}: line {number} is not a JSON object")
        records.append(record)
    return records


class JsonlAppender:
    """Appends JSON lines to a file as results finish (flushed each time, so a killed run keeps them)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():  # cut a torn last line so the next record starts on its own line
            raw = path.read_bytes()
            if raw and not raw.endswith(b"\n"):
                path.write_bytes(raw[: raw.rfind(b"\n") + 1])
        self.fh = path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: a kill leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def check_out(
    out: Path, run: dict, *, overwrite: bool, outputs: Iterable[Path] = (), what: str = "a run"
) -> None:
    """Refuse an output folder ``out`` that cannot hold ``run`` (what was asked: model, settings, ...),
    writing nothing: a file (or a path under a file), or a folder whose ``run.json`` records another run
    (naming the fields that differ), or one that holds ``outputs`` but no ``run.json`` — unless
    ``overwrite``; ``what`` names the previous run in that message."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--out {out}: {parent} is a file, not a folder")
            if not out.exists() and not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"--out {out}: cannot create the folder ({parent} is not writable)")
            break
    if overwrite:
        return
    previous = out / RUN_FILE
    if previous.is_file():
        try:
            before = json.loads(previous.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            before = {}
        if not isinstance(before, dict):
            before = {}
        if before != run:
            changed = sorted(k for k in set(before) | set(run) if before.get(k) != run.get(k))
            raise UserError(
                f"--out {out}: holds {what} with other settings ({', '.join(changed)}); use another --out, "
                "or --overwrite to start over"
            )
    else:
        found = [p.name for p in outputs if p.exists()]
        if found:
            raise UserError(
                f"--out {out}: holds results ({', '.join(found)}) with no {RUN_FILE} saying what made them; "
                "use another --out, or --overwrite to replace them"
            )


def start_run(out: Path, run: dict, *, overwrite: bool, outputs: Iterable[Path], what: str = "a run") -> None:
    """Open the output folder ``out`` for ``run`` (what was asked: model, settings, ...), recorded in
    ``run.json``. A folder holding another run is refused (naming the fields that differ) unless
    ``overwrite``, which deletes ``outputs`` first; ``what`` names the previous run in that message."""
    outputs = list(outputs)
    check_out(out, run, overwrite=overwrite, what=what)
    previous = out / RUN_FILE
    if overwrite:
        for path in outputs:
            path.unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    write_atomic(previous, json.dumps(run, indent=2) + "\n")

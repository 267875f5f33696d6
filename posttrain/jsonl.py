"""JSON Lines for runs that can be killed: records appended (and flushed) as they finish, and read back
with the torn last line of a killed write ignored. The evaluators and the principle extraction resume
from these files."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.errors import UserError


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (a run killed mid-write) is ignored, any other bad line is
    a :class:`UserError` naming the file and line."""
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
            if number == len(lines):  # no newline after it: the write never finished
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

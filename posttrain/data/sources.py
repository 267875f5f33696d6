"""Reading raw records from local files or the hub.

Local files: ``.json`` (a list of objects), ``.jsonl``, ``.parquet``, each optionally gzip-compressed
(``.jsonl.gz``). Hub datasets go through ``datasets.load_dataset(id, name, split=...)``.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.paths import find_file


def _open_text(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


def read_local(path_str: str) -> list[dict[str, Any]]:
    path = find_file(path_str)
    if path is None:
        raise UserError(f"data file not found: {path_str}")
    kind = path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    try:
        if kind == ".jsonl":
            records = []
            with _open_text(path) as fh:
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise UserError(f"{path_str}: line {lineno}: invalid JSON ({exc.msg})") from None
        elif kind == ".json":
            with _open_text(path) as fh:
                try:
                    records = json.load(fh)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path_str}: invalid JSON at line {exc.lineno} ({exc.msg})") from None
            if (
                isinstance(records, dict)
                and len(records) == 1
                and isinstance(next(iter(records.values())), list)
            ):
                records = next(iter(records.values()))
            if not isinstance(records, list):
                raise UserError(f"{path_str}: expected a JSON list of records")
        elif kind == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            source = io.BytesIO(gzip.decompress(path.read_bytes())) if path.suffix == ".gz" else path
            try:
                records = pq.read_table(source).to_pylist()
            except pa.ArrowException as exc:
                raise UserError(f"{path_str}: cannot read parquet: {exc}") from None
        else:
            raise UserError(
                f"{path_str}: unsupported file type '{kind}' (use .json, .jsonl, .parquet, or .gz)"
            )
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile, zlib.error) as exc:
        raise UserError(f"{path_str}: cannot read: {exc}") from None
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise UserError(f"{path_str}: record {i + 1} is a {type(rec).__name__}, expected an object")
    return records


def _offline() -> bool:
    import os

    flags = (os.environ.get(k, "").strip().lower() for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flag in ("1", "true", "yes", "on") for flag in flags)


def read_hub(
    dataset_id: str, name: str | None, split: str, data_dir: str | None = None
) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, name, split=split, data_dir=data_dir)
    except (OSError, ValueError) as exc:  # OSError: ConnectionError (offline, unreachable), missing files
        offline = " (offline: HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)" if _offline() else ""
        text = " ".join(str(exc).split())
        raise UserError(
            f"hub dataset {dataset_id} ({name or 'default'}, split {split}): {text}{offline}"
        ) from None
    return ds.to_list()


def read_source(source) -> tuple[list[dict[str, Any]], str]:
    """Records of a recipe ``DataSource`` (path or hub), cut to ``limit``; also a display name."""
    if source.path is not None:
        records, label = read_local(source.path), source.path
    else:
        records, label = (
            read_hub(source.hub, source.name, source.split, source.data_dir),
            f"{source.hub}:{source.split}",
        )
    if source.limit is not None:
        records = records[: source.limit]
    return records, label

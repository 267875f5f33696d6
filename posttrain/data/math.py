"""Verifiable-math data: training prompts for DRPO and the benchmark sets of its evaluation.

Formats (a recipe ``DataSource.format``):

- ``math``: records ``{problem, answer}`` — MATH, DeepScaleR (``agentica-org/DeepScaleR-Preview-Dataset``,
  which also has ``solution``), the paper's test sets. ``answer`` is a string, a JSON number (AMC's
  ``142.0``, AIME 2025's ``70``) or a list of acceptable answers (Minerva, OlympiadBench).
- ``gsm8k``: records ``{question, answer}`` where ``answer`` is the worked solution ending ``#### n``; the
  gold is ``n`` (commas removed).
- ``auto``: ``problem`` → math, ``question`` → gsm8k, decided on the first record.

Every record becomes ``{"prompt": [{"role": "user", "content": problem + " " + suffix}], "answer": gold}``
(problem and suffix joined by a space, as the official DRPO data script ``scripts/data/deepscaler_dataset.py``)
(with an optional system message first), the conversational prompt column TRL's GRPO-style trainers
expect, and the ``answer`` column :func:`posttrain.rewards.math.math_correctness` reads.

Benchmarks for ``posttrain eval math`` are files ``<name>.json`` in a folder (:func:`math_benchmark_records`):
the paper's seven test sets ship as ``{problem, answer}`` lists in DRPO's repository (deepscaler's
``data/test``); on these machines a read-only copy lies in ``../shared/benchmarks/math``. It is third-party
data and is only ever read in place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from posttrain.data.preference import DropReport, _Drop
from posttrain.data.sources import read_local, read_source
from posttrain.errors import UserError, did_you_mean
from posttrain.paths import PROJECT_ROOT, find_file
from posttrain.rewards.math import DRPO_SUFFIX, extract_gsm8k_answer, gold_to_str

MATH_FORMATS = ("math", "gsm8k")
BENCHMARKS = ("gsm8k", "math500", "aime24", "aime25", "amc", "minerva", "olympiad_bench")
DATA_ENV = "POSTTRAIN_MATH_DATA"

logger = logging.getLogger(__name__)


def _require(rec: dict, key: str, where: str) -> Any:
    """A field that must be present; a present null or empty value is a drop (see the module docstring)."""
    if key not in rec:
        present = ", ".join(sorted(rec)) or "none"
        raise UserError(f"{where}: missing field '{key}' (fields present: {present})")
    value = rec[key]
    if value is None or (isinstance(value, (str, list)) and not value):
        raise _Drop(f"empty '{key}'")
    return value


def detect_math_format(rec: dict, where: str) -> str:
    if "problem" in rec:
        return "math"
    if "question" in rec:
        return "gsm8k"
    present = ", ".join(sorted(rec)) or "none"
    raise UserError(
        f"{where}: cannot detect a math format from the fields ({present}); expected 'problem' and 'answer' "
        "(format: math) or 'question' and an answer ending '#### n' (format: gsm8k)"
    )


def _gold(value: Any, where: str) -> str | list[str]:
    """A gold answer: a string, a number, or a list of them (several acceptable answers)."""
    values = value if isinstance(value, list) else [value]
    try:
        golds = [gold_to_str(v) for v in values]
    except TypeError as exc:
        raise UserError(f"{where}: field 'answer': {exc}") from None
    golds = [g for g in golds if g]
    if not golds:
        raise _Drop("empty 'answer'")
    return golds if isinstance(value, list) else golds[0]


def adapt_math_record(rec: dict, fmt: str, where: str) -> dict[str, Any]:
    """``{"problem": str, "answer": str | list[str]}`` from one raw record of format math or gsm8k.

    Raises :class:`UserError` for a malformed record, ``_Drop`` for one without a usable answer.
    """
    if fmt == "math":
        field = "problem"
        problem = _require(rec, "problem", where)
        answer = _gold(_require(rec, "answer", where), where)
    elif fmt == "gsm8k":
        field = "question"
        problem = _require(rec, "question", where)
        solution = _require(rec, "answer", where)
        if not isinstance(solution, str):
            raise UserError(f"{where}: field 'answer' must be a GSM8K solution string ending '#### n'")
        try:
            answer = extract_gsm8k_answer(solution)
        except ValueError as exc:
            raise UserError(f"{where}: field 'answer': {exc} (GSM8K solutions end with '#### n')") from None
    else:
        raise UserError(f"format '{fmt}' is not a math format ({', '.join(MATH_FORMATS)})")
    if not isinstance(problem, str):
        raise UserError(f"{where}: field '{field}' must be a string, got {type(problem).__name__}")
    if not problem.strip():
        raise _Drop(f"empty '{field}'")
    return {"problem": problem.strip(), "answer": answer}


def adapt_math_records(records: list[dict], fmt: str, label: str) -> tuple[list[dict[str, Any]], DropReport]:
    """Normalize raw records (format ``auto`` is decided on the first).

    A malformed record (missing field, wrong type, GSM8K solution without ``####``) raises
    :class:`UserError` naming the record. A record whose problem or answer is present but null/empty
    cannot be scored: it is dropped and counted (MATH train as shipped with DRPO has four such records).
    """
    if not records:
        raise UserError(f"{label}: no records")
    if fmt == "auto":
        fmt = detect_math_format(records[0], f"{label}: record 1")
    elif fmt not in MATH_FORMATS:
        raise UserError(
            f"{label}: format '{fmt}' is not a math format (use {', '.join(MATH_FORMATS)} or auto)"
        )
    report = DropReport(source=label, read=len(records))
    out = []
    for i, rec in enumerate(records):
        try:
            out.append(adapt_math_record(rec, fmt, f"{label}: record {i + 1}"))
        except _Drop as drop:
            report.drop(drop.reason)
    report.kept = len(out)
    if not out:
        raise UserError(f"{report.summary()}: no usable records left")
    if report.dropped:
        logger.warning("%s", report.summary())
    return out, report


def build_prompt(problem: str, suffix: str | None = DRPO_SUFFIX, system_prompt: str | None = None) -> list:
    """The conversational prompt: optional system message, then ``problem + " " + suffix`` as the user (the
    official DRPO data script joins them with a space)."""
    content = f"{problem} {suffix}" if suffix else problem
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": content}]


def load_math_split(
    source,
    *,
    suffix: str | None = DRPO_SUFFIX,
    system_prompt: str | None = None,
    report: DropReport | None = None,
):
    """A ``datasets.Dataset`` with columns ``prompt`` (messages) and ``answer`` (gold string).

    ``source``: a recipe ``DataSource`` (``path`` or ``hub``/``name``/``data_dir``/``split``, ``format``
    math | gsm8k | auto, ``limit`` = the first N records). When some record lists several acceptable
    answers, ``answer`` holds the first and an ``answers`` column holds them all (empty lists elsewhere),
    which :func:`posttrain.rewards.math.math_correctness` prefers. ``report``: a :class:`DropReport` to
    fill for the run's data report: its ``source`` becomes the data label (file path or hub id:split),
    and it gets the read/kept/dropped counts.
    """
    import datasets

    records, label = read_source(source)
    rows, counted = adapt_math_records(records, source.format, label)
    if report is not None:
        report.source, report.read, report.kept = counted.source, counted.read, counted.kept
        report.dropped.update(counted.dropped)
    answers = [r["answer"] if isinstance(r["answer"], list) else [r["answer"]] for r in rows]
    columns: dict[str, list] = {
        "prompt": [build_prompt(r["problem"], suffix, system_prompt) for r in rows],
        "answer": [a[0] for a in answers],
    }
    if any(len(a) > 1 for a in answers):
        columns["answers"] = [a if len(a) > 1 else [] for a in answers]
    return datasets.Dataset.from_dict(columns)


# ------------------------------------------------------------------------------------------- benchmarks


def default_benchmark_dir() -> Path | None:
    """``$POSTTRAIN_MATH_DATA``, else the shared copy beside the project (``../shared/benchmarks/math``)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    local = PROJECT_ROOT.parent / "shared" / "benchmarks" / "math"
    return local if local.is_dir() else None


def benchmark_name(name_or_path: str) -> str:
    """Display name: a benchmark name as given, a file by its stem (``data/x/test.jsonl`` → ``test``)."""
    if name_or_path in BENCHMARKS:
        return name_or_path
    name = Path(name_or_path).name
    for ext in (".gz", ".jsonl", ".json", ".parquet"):
        name = name.removesuffix(ext)
    return name


def _benchmark_file(name_or_path: str, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise UserError(f"--data-dir {data_dir}: not a folder")
    else:
        root = default_benchmark_dir()
    if root is not None:
        for ext in (".json", ".jsonl"):
            if (root / f"{name_or_path}{ext}").is_file():
                return root / f"{name_or_path}{ext}"
    looks_like_file = "/" in name_or_path or name_or_path.endswith((".json", ".jsonl", ".gz", ".parquet"))
    if looks_like_file:
        found = find_file(name_or_path)
        if found is not None and found.is_file():
            return found
        raise UserError(f"benchmark file not found: {name_or_path}")
    if name_or_path not in BENCHMARKS:
        raise UserError(
            f"unknown benchmark '{name_or_path}' (known: {', '.join(BENCHMARKS)}; or give a .json/.jsonl "
            "file of {problem, answer} records)" + did_you_mean(name_or_path, BENCHMARKS)
        )
    if root is None:
        raise UserError(
            f"benchmark '{name_or_path}': no benchmark folder found; pass --data-dir DIR with {name_or_path}.json "
            f"({{problem, answer}} records, e.g. DRPO's deepscaler/data/test) or set {DATA_ENV}"
        )
    raise UserError(
        f"benchmark '{name_or_path}': {root} has no {name_or_path}.json; pass --data-dir DIR holding it "
        f"(or set {DATA_ENV})"
    )


def math_benchmark_records(
    name_or_path: str, data_dir: str | os.PathLike | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Records ``{"problem", "answer"}`` (answer: str, or list[str] of acceptable answers) of a benchmark.

    ``name_or_path``: one of :data:`BENCHMARKS` (or any ``<name>.json``/``.jsonl`` in the folder), read as
    ``<data_dir>/<name>.json``; or a file path (format math or gsm8k, detected). ``data_dir`` defaults to
    :func:`default_benchmark_dir`. ``limit``: the first N problems.
    """
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1, got {limit}")
    path = _benchmark_file(name_or_path, data_dir)
    records = read_local(str(path))
    if limit is not None:
        records = records[:limit]
    return adapt_math_records(records, "auto", str(path))[0]

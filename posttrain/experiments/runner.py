"""The study runner: arms × seeds, one subprocess per run, resumable; summary with t intervals; plot.

Layout of a study's output folder::

    <out>/study.json                  the study's configuration (a rerun with another one is refused)
    <out>/<arm>/seed<k>/spec.json     what the run was asked to do
    <out>/<arm>/seed<k>/log.txt       the run's stdout and stderr
    <out>/<arm>/seed<k>/result.json   written (temp file, then rename) only when the run finished
    <out>/summary.json, summary.md    per-arm mean and 95% Student t interval across seeds
    <out>/<plot>.png                  the study's plot

A run whose folder has ``result.json`` is finished and never redone; a folder without it is a killed or
failed run and is cleared and redone.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.log import emit

RESULT_FILE = "result.json"
STUDY_FILE = "study.json"

# two-sided 95% quantiles of Student's t, t_{0.975, df}, df = 1..30
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: scipy's value when installed, else a table (df ≤ 30) and a Cornish–Fisher expansion."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:
        pass
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean and 95% Student t interval across seeds: mean ± t_{0.975, n−1} · s / √n. With one value there is
    no interval (``half_width`` None); with none, everything is None."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "half_width": None, "low": None, "high": None}
    mean = sum(vals) / n
    if n == 1:
        return {"n": 1, "mean": mean, "sd": None, "half_width": None, "low": None, "high": None}
    sd = statistics.stdev(vals)
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "half_width": half, "low": mean - half, "high": mean + half}


@dataclass
class Metric:
    key: str  # in a run result's "metrics"
    label: str
    scale: float = 1.0  # shown × scale (e.g. 100 for %)
    digits: int = 1


@dataclass
class Study:
    """What the runner needs from a study module."""

    name: str
    arms: list[str]
    config: dict[str, Any]  # JSON-serializable; every run gets it (the worker reads its part)
    worker: str  # module with ``run_one(spec) -> dict``, run as a subprocess by the default executor
    metrics: list[Metric]
    plot: Callable[[list[dict], dict, Path], Path] | None = None  # (results, summary, out dir) -> png
    deterministic_arms: list[str] = field(
        default_factory=list
    )  # run once (the first seed): same result each time
    notes: list[str] = field(default_factory=list)
    # paired differences (arm − reference, per seed) for these reference arms and metric keys: every arm of a
    # seed trains on the same data in the same order and is evaluated with the same seed, so the per-seed
    # difference removes what the seeds share and its interval is the one that says whether arms differ
    compare_to: list[str] = field(default_factory=list)
    compare_metrics: list[str] = field(default_factory=list)
    # more of the summary's markdown from the finished runs (a study's own analysis), after the tables
    analysis: Callable[[list[dict]], list[str]] | None = None


@dataclass
class RunSpec:
    study: str
    arm: str
    seed: int
    run_dir: str
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "arm": self.arm,
            "seed": self.seed,
            "run_dir": self.run_dir,
            "config": self.config,
        }


class RunFailed(RuntimeError):
    pass


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temp file in the same folder, then rename: a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def subprocess_executor(worker: str, timeout: float | None = None) -> Callable[[RunSpec], dict]:
    """Run ``python -m <worker> <run_dir>/spec.json`` with stdout and stderr to ``<run_dir>/log.txt``; the worker
    writes ``<run_dir>/worker_result.json``, returned here."""

    def execute(spec: RunSpec) -> dict:
        run_dir = Path(spec.run_dir)
        with open(run_dir / "log.txt", "w") as log:
            proc = subprocess.run(
                [sys.executable, "-m", worker, str(run_dir / "spec.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        result_path = run_dir / "worker_result.json"
        if proc.returncode != 0 or not result_path.is_file():
            tail = (run_dir / "log.txt").read_text(errors="replace").strip().splitlines()[-5:]
            raise RunFailed(
                f"exit code {proc.returncode}; last lines of {run_dir / 'log.txt'}:\n    "
                + "\n    ".join(tail)
            )
        return json.loads(result_path.read_text())

    return execute


def run_dirs(out: Path, study: Study, seeds: Sequence[int]) -> list[tuple[str, int, Path]]:
    """(arm, seed, run folder) of every run; a deterministic arm runs with the first seed only."""
    return [
        (arm, seed, out / arm / f"seed{seed}")
        for arm in study.arms
        for seed in (seeds[:1] if arm in study.deterministic_arms else seeds)
    ]


def check_study_file(out: Path, study: Study, *, write: bool = True) -> None:
    """A study folder holds one configuration: rerunning it with another is refused (results would mix)."""
    path = out / STUDY_FILE
    mine = {"study": study.name, "config": study.config}
    if path.is_file():
        theirs = json.loads(path.read_text())
        if {"study": theirs.get("study"), "config": theirs.get("config")} != json.loads(json.dumps(mine)):
            raise UserError(
                f"{out} holds a {theirs.get('study')} study with another configuration ({path}); "
                "use another --out, or delete that folder to start over"
            )
    elif write:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, mine)


def run_study(
    study: Study,
    out: Path,
    seeds: Sequence[int],
    *,
    execute: Callable[[RunSpec], dict] | None = None,
    dry_run: bool = False,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run every arm × seed not finished yet, then write the summary (JSON + markdown) and the plot.
    Returns the summary; ``summary["failed"]`` lists runs that failed this time (they are redone next time)."""
    log = log or (lambda line: emit(f"[experiments] {line}", err=True))
    out = Path(out)
    check_study_file(out, study, write=False)  # before anything is counted or run
    plan = run_dirs(out, study, seeds)
    finished = [(arm, seed, d) for arm, seed, d in plan if (d / RESULT_FILE).is_file()]
    todo = [(arm, seed, d) for arm, seed, d in plan if not (d / RESULT_FILE).is_file()]
    log(
        f"{study.name}: {len(plan)} runs ({len(study.arms)} arms × {len(seeds)} seeds) in {out}; "
        f"{len(finished)} finished, {len(todo)} to run"
    )
    if dry_run:
        for arm, seed, d in plan:
            state = (
                "finished" if (d / RESULT_FILE).is_file() else ("partial: redo" if d.exists() else "to run")
            )
            log(f"  {arm} seed{seed}: {state}")
        return {"study": study.name, "dry_run": True, "planned": len(plan), "todo": len(todo)}
    check_study_file(out, study)
    execute = execute or subprocess_executor(study.worker)
    failed = []
    started = time.time()
    for i, (arm, seed, d) in enumerate(todo, 1):
        if d.exists():
            log(f"{arm} seed{seed}: partial run from before (no {RESULT_FILE}), cleared and redone")
            shutil.rmtree(d)
        d.mkdir(parents=True)
        spec = RunSpec(study.name, arm, seed, str(d), study.config)
        write_json_atomic(d / "spec.json", spec.to_dict())
        log(f"[{i}/{len(todo)}] {arm} seed{seed}: running (log: {d / 'log.txt'})")
        t0 = time.time()
        try:
            result = execute(spec)
        except RunFailed as exc:
            log(f"[{i}/{len(todo)}] {arm} seed{seed}: FAILED after {_fmt_time(time.time() - t0)}: {exc}")
            failed.append({"arm": arm, "seed": seed, "error": str(exc)})
            continue
        result = {"arm": arm, "seed": seed, **result, "wall_s": round(time.time() - t0, 1)}
        write_json_atomic(d / RESULT_FILE, result)
        shown = ", ".join(
            f"{m.label} {_fmt_value(result.get('metrics', {}).get(m.key), m)}" for m in study.metrics[:3]
        )
        elapsed = time.time() - started
        eta = elapsed / i * (len(todo) - i)
        log(
            f"[{i}/{len(todo)}] {arm} seed{seed}: done in {_fmt_time(time.time() - t0)} ({shown}); "
            f"study elapsed {_fmt_time(elapsed)}, ~{_fmt_time(eta)} left"
        )
    results = [json.loads((d / RESULT_FILE).read_text()) for _, _, d in plan if (d / RESULT_FILE).is_file()]
    summary = summarize(study, results, seeds)
    summary["failed"] = failed
    summary["command"] = command
    summary["environment"] = environment()
    write_summary(study, summary, out)
    if study.plot is not None and results:
        path = study.plot(results, summary, out)
        summary["plot"] = str(path)
        log(f"plot: {path}")
    log(f"summary: {out / 'summary.md'}")
    return summary


def _fmt_value(value: float | None, m: Metric) -> str:
    if value is None:
        return "—"
    return f"{value * m.scale:.{m.digits}f}"


def environment() -> dict[str, Any]:
    """Versions and machine, for the summary (results are committed with them)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("posttrain", "torch", "transformers", "trl", "accelerate", "vllm"):
        with contextlib.suppress(PackageNotFoundError):
            versions[pkg] = version(pkg)
    machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        import torch

        machine["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            machine["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"versions": versions, "machine": machine, "git_commit": commit or None}


def summarize(study: Study, results: list[dict], seeds: Sequence[int]) -> dict[str, Any]:
    """Per arm and metric: n, mean, sd and the 95% t interval across the arm's finished seeds."""
    arms = {}
    for arm in study.arms:
        rows = [r for r in results if r["arm"] == arm]
        arms[arm] = {
            "runs": len(rows),
            "seeds": sorted(r["seed"] for r in rows),
            "metrics": {
                m.key: interval([r.get("metrics", {}).get(m.key) for r in rows]) for m in study.metrics
            },
        }
    walls = [r["wall_s"] for r in results if r.get("wall_s") is not None]
    return {
        "study": study.name,
        "seeds_planned": list(seeds),
        "config": study.config,
        "arms": arms,
        "paired": paired_differences(study, results),
        "run_time": {"runs": len(walls), "total_s": sum(walls), "longest_s": max(walls, default=None)},
        "metrics": [
            {"key": m.key, "label": m.label, "scale": m.scale, "digits": m.digits} for m in study.metrics
        ],
        "runs": results,
        "notes": study.notes,
    }


def paired_differences(study: Study, results: list[dict]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{reference: {arm: {metric: interval}}}``: per seed, the arm's value minus the reference's value of
    the same seed, then the t interval of those differences. A deterministic reference (one run) is
    subtracted from every seed of the arm."""
    by = {(r["arm"], r["seed"]): r.get("metrics", {}) for r in results}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in study.compare_to:
        ref_seeds = sorted(seed for arm, seed in by if arm == ref)
        if not ref_seeds:
            continue
        out[ref] = {}
        for arm in study.arms:
            arm_seeds = sorted(seed for a, seed in by if a == arm)
            if arm == ref or not arm_seeds:
                continue
            # a deterministic arm's one run stands for every seed of the other side
            if arm in study.deterministic_arms:
                pairs = [(arm_seeds[0], seed) for seed in ref_seeds]
            elif ref in study.deterministic_arms:
                pairs = [(seed, ref_seeds[0]) for seed in arm_seeds]
            else:
                pairs = [(seed, seed) for seed in arm_seeds if seed in ref_seeds]
            table = {}
            for key in study.compare_metrics:
                diffs = []
                for arm_seed, ref_seed in pairs:
                    a, b = by[(arm, arm_seed)].get(key), by[(ref, ref_seed)].get(key)
                    if a is not None and b is not None:
                        diffs.append(a - b)
                table[key] = interval(diffs)
            out[ref][arm] = table
    return out


def paired_tables(study: Study, summary: dict[str, Any]) -> list[str]:
    """Markdown: one table of paired differences per reference arm (empty when the study asks for none)."""
    metrics = [m for m in study.metrics if m.key in study.compare_metrics]
    lines: list[str] = []
    for ref, rows in (summary.get("paired") or {}).items():
        lines += [
            f"Paired differences, arm − {ref} (same seed; mean ± 95% t half-width over seeds; an interval that "
            "excludes 0 is a difference larger than the seed-to-seed noise):",
            "",
            "| arm | " + " | ".join(m.label for m in metrics) + " |",
            "|" + "---|" * (len(metrics) + 1),
        ]
        for arm, table in rows.items():
            cells = []
            for m in metrics:
                stats = table[m.key]
                cell = format_cell(stats, m)
                if stats["half_width"] is not None and stats["mean"] is not None:
                    cell = ("+" if stats["mean"] >= 0 else "") + cell
                    # bold: the interval excludes 0. Not when the seeds agree exactly (s = 0): with few seeds
                    # and a discrete measure (accuracy on N pairs) that is a tie, not a zero-width interval
                    if stats["half_width"] > 0 and (stats["low"] > 0 or stats["high"] < 0):
                        cell = f"**{cell}**"
                cells.append(cell)
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def format_cell(stats: dict[str, Any], m: Metric) -> str:
    """``mean ± half-width`` (95% t interval), ``mean (n=1, no interval)`` or ``—``."""
    if stats["mean"] is None:
        return "—"
    mean = _fmt_value(stats["mean"], m)
    if stats["half_width"] is None:
        return f"{mean} (n=1, no interval)"
    return f"{mean} ± {_fmt_value(stats['half_width'], m)}"


def markdown_table(study: Study, summary: dict[str, Any]) -> str:
    head = "| arm | runs | " + " | ".join(m.label for m in study.metrics) + " |"
    lines = [head, "|" + "---|" * (len(study.metrics) + 2)]
    for arm in study.arms:
        a = summary["arms"][arm]
        cells = [format_cell(a["metrics"][m.key], m) for m in study.metrics]
        lines.append(f"| {arm} | {a['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary(study: Study, summary: dict[str, Any], out: Path) -> None:
    write_json_atomic(out / "summary.json", summary)
    lines = [
        f"# {study.name}: summary",
        "",
        "Mean ± half-width of the 95% Student t interval across seeds (t_{0.975, n−1} · s / √n); "
        "n=1: no interval.",
        "",
        markdown_table(study, summary),
        "",
        *paired_tables(study, summary),
        *(study.analysis(summary["runs"]) if study.analysis and summary.get("runs") else []),
    ]
    run_time = summary.get("run_time") or {}
    if run_time.get("runs"):
        lines += [
            f"Run time: {run_time['runs']} runs, {run_time['total_s'] / 60:.1f} min in all (the sum of each run's "
            f"wall time, model loading and evaluation included; longest run {run_time['longest_s'] / 60:.1f} min).",
            "",
        ]
    if summary.get("failed"):
        lines += ["Failed this time (redone on the next run of the study):", ""]
        lines += [f"- {f['arm']} seed{f['seed']}: {f['error'].splitlines()[0]}" for f in summary["failed"]]
        lines.append("")
    lines += [f"- {note}" for note in study.notes]
    env = summary.get("environment") or {}
    if summary.get("command"):
        lines += ["", f"Command: `{summary['command']}`"]
    if env:
        lines += [
            "",
            f"Versions: {json.dumps(env.get('versions'))}; machine: {json.dumps(env.get('machine'))}; "
            f"commit {env.get('git_commit')}.",
        ]
    lines += ["", "Configuration:", "", "```json", json.dumps(study.config, indent=2), "```", ""]
    (out / "summary.md").write_text("\n".join(lines))

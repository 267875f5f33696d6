"""Math benchmarks for policies: pass@1 over k samples and response length, the two axes of DRPO.

DRPO (Li et al., arXiv 2510.04474) trades response length against accuracy, so a run is judged by both:
per benchmark, k sampled responses per problem (temperature 0.6, top-p 0.95 by default) give

    pass@1            = mean over problems of (correct samples / k)
    mean_length       = mean generated tokens over all samples (tokens before the end-of-sequence token)
    mean_length_correct / mean_length_incorrect = the same over correct / incorrect samples (None if none)
    truncated         = fraction of samples that hit --max-new-tokens without ending (graded wrong, as
                        the official DRPO reward does; counted as long as the limit)

and ``average`` is the unweighted mean of pass@1 and mean_length over the benchmarks (each benchmark
counts once, as in the paper's tables). Correctness is :func:`posttrain.rewards.math.is_correct`, the
strict grader DRPO trains with (math-verify on the final ``\\boxed{}`` or ``####`` answer, read after
``</think>``; a truncated sample is wrong).

Outputs (``out_dir``): ``results.json`` (settings + the numbers above), ``samples.jsonl`` (one line per
sample: benchmark, problem, sample, answer, completion, length, truncated, correct — :func:`summarize`
over it reproduces the numbers), and ``math_eval.png``: pass@1 against mean length, one panel per
benchmark, one marker per run; :func:`plot_runs` puts several result folders on one chart.

Backends: ``hf`` (transformers ``generate``, batched with left padding) runs anywhere; ``vllm`` (``vllm.LLM``
with ``SamplingParams(n=k)``) needs a GPU and ``pip install -e '.[vllm]'``. Both render prompts with the
model's chat template through the same tokenizer, so they see identical token ids.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from posttrain import log
from posttrain.data import math as math_data
from posttrain.data.math import benchmark_name, build_prompt, math_benchmark_records
from posttrain.errors import UserError
from posttrain.evaluation.results import RESULTS_FILE, read_results
from posttrain.evaluation.tables import aligned_table
from posttrain.generation import build_generator, default_backend, render_prompts
from posttrain.jsonl import RUN_FILE, check_out, write_atomic
from posttrain.rewards.math import DRPO_SUFFIX, is_correct

SAMPLES_FILE = "samples.jsonl"
PLOT_FILE = "math_eval.png"


@dataclass
class MathEvalSettings:
    samples: int = 16
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 8192
    limit: int | None = None
    suffix: str | None = DRPO_SUFFIX
    system_prompt: str | None = None
    seed: int = 0

    def check(self) -> None:
        if self.samples < 1:
            raise UserError(f"--samples must be at least 1, got {self.samples}")
        if self.temperature < 0:
            raise UserError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")


# --------------------------------------------------------------------------------------------- metrics


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(samples: Sequence[dict]) -> dict[str, Any]:
    """Per-benchmark numbers and their average from sample rows (``benchmark``, ``problem``, ``length``,
    ``truncated``, ``correct``). Pure: the same rows always give the same numbers (see the module docstring).
    """
    grouped: dict[str, dict[int, list[dict]]] = {}
    for row in samples:
        grouped.setdefault(row["benchmark"], {}).setdefault(row["problem"], []).append(row)
    benchmarks: dict[str, dict[str, Any]] = {}
    for name, problems in grouped.items():
        rows = [r for group in problems.values() for r in group]
        ks = {len(group) for group in problems.values()}
        benchmarks[name] = {
            "problems": len(problems),
            "samples_per_problem": ks.pop() if len(ks) == 1 else sorted(ks),
            "pass@1": _mean([_mean([float(r["correct"]) for r in group]) for group in problems.values()]),
            "mean_length": _mean([r["length"] for r in rows]),
            "mean_length_correct": _mean([r["length"] for r in rows if r["correct"]]),
            "mean_length_incorrect": _mean([r["length"] for r in rows if not r["correct"]]),
            "truncated": _mean([float(r["truncated"]) for r in rows]),
        }
    average = {
        "pass@1": _mean([b["pass@1"] for b in benchmarks.values()]),
        "mean_length": _mean([b["mean_length"] for b in benchmarks.values()]),
        "benchmarks": len(benchmarks),
    }
    return {"benchmarks": benchmarks, "average": average}


# ---------------------------------------------------------------------------------------------- running


def _write_outputs(out: Path, results: dict, rows: list[dict], extra_runs: Sequence[dict] = ()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run = {"model": results["model"], "settings": results["settings"]}  # what --out holds (see check_out)
    write_atomic(out / RUN_FILE, json.dumps(run, indent=2) + "\n")
    tmp = out / (SAMPLES_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out / SAMPLES_FILE)
    tmp = out / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out / RESULTS_FILE)
    plot_runs([results, *extra_runs], out / PLOT_FILE)


def _resume_rows(out: Path, settings_key: dict) -> list[dict]:
    """Sample rows of a previous run into ``out`` with the same model and settings (or none)."""
    if not (out / RESULTS_FILE).is_file() or not (out / SAMPLES_FILE).is_file():
        return []
    previous = json.loads((out / RESULTS_FILE).read_text())
    if {k: previous.get(k) for k in settings_key} != settings_key:
        raise UserError(
            f"--resume: {out / RESULTS_FILE} was written with other settings or another model; "
            "use a new --out folder"
        )
    return [json.loads(line) for line in (out / SAMPLES_FILE).read_text().splitlines() if line.strip()]


def evaluate_math(
    model: str,
    benchmarks: Sequence[str],
    *,
    settings: MathEvalSettings | None = None,
    data_dir: str | os.PathLike | None = None,
    backend: str | None = None,
    dtype: str = "auto",
    batch_size: int = 32,
    out_dir: str | os.PathLike | None = None,
    label: str | None = None,
    compare: Sequence[str | os.PathLike] = (),
    resume: bool = False,
    overwrite: bool = False,
    generator=None,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample, grade and summarize ``model`` on ``benchmarks`` (names or files, see
    :func:`posttrain.data.math.math_benchmark_records`); returns the results dict written to
    ``results.json``. All benchmarks are read (and checked) before the model loads. With ``out_dir`` the
    outputs are rewritten after each benchmark, so ``resume=True`` skips benchmarks already done with the
    same settings. An ``out_dir`` holding another model's or other settings' results is refused unless
    ``overwrite`` (its ``run.json`` says what made them). ``compare``: other result folders drawn on the same
    chart. ``generator``: a ready generator (tests; otherwise built by :func:`build_generator`).
    """
    settings = settings or MathEvalSettings()
    settings.check()
    if not benchmarks:
        raise UserError("--benchmarks: name at least one benchmark")
    names = [benchmark_name(b) for b in benchmarks]
    if len(set(names)) != len(names):
        raise UserError(f"--benchmarks: a benchmark is named twice ({', '.join(names)})")
    data = {name: math_benchmark_records(b, data_dir, settings.limit) for name, b in zip(names, benchmarks)}
    others = [load_results(d) for d in compare]
    header = {
        "model": model,
        "label": label or model.removeprefix("embedded:").rstrip("/").split("/")[-1],
        "settings": asdict(settings),
        "data": {
            "benchmarks": [str(b) for b in benchmarks],
            "data_dir": str(folder) if (folder := data_dir or math_data.default_benchmark_dir()) else None,
        },
    }
    out = Path(out_dir) if out_dir is not None else None
    key = {"model": header["model"], "settings": header["settings"]}
    if out is not None:  # fail now, not after hours of sampling; nothing is written before the first result
        outputs = [out / RESULTS_FILE, out / SAMPLES_FILE]
        check_out(out, key, overwrite=overwrite, outputs=outputs, what="math results of another run")
    rows: list[dict] = _resume_rows(out, key) if (resume and out is not None) else []
    rows = [r for r in rows if r["benchmark"] in names]
    done = {r["benchmark"] for r in rows}
    if generator is None and any(name not in done for name in names):
        backend = backend or default_backend()
        generator, _ = build_generator(
            model, backend=backend, dtype=dtype, batch_size=batch_size, seed=settings.seed, progress=progress
        )
    header["backend"] = backend if generator is None or backend else type(generator).__name__
    tokenizer = getattr(generator, "tokenizer", None)
    results: dict[str, Any] = {}
    for name in names:
        if name in done:
            log.info(f"{name}: done in a previous run, skipped (--resume)")
            continue
        records = data[name]
        prompts = [build_prompt(r["problem"], settings.suffix, settings.system_prompt) for r in records]
        generations = generator.generate(render_prompts(tokenizer, prompts), settings, desc=name)
        for p, (rec, gens) in enumerate(zip(records, generations)):
            for s, gen in enumerate(gens):
                rows.append(
                    {
                        "benchmark": name,
                        "problem": p,
                        "sample": s,
                        "answer": rec["answer"],
                        "completion": gen.text,
                        "length": gen.length,
                        "truncated": gen.truncated,
                        "correct": is_correct(gen.text, rec["answer"], truncated=gen.truncated),
                    }
                )
        rows.sort(key=lambda r: (names.index(r["benchmark"]), r["problem"], r["sample"]))
        results = {**header, **summarize(rows)}
        if out is not None:
            _write_outputs(out, results, rows, others)
    if not results:  # everything resumed
        results = {**header, **summarize(rows)}
        if out is not None:
            _write_outputs(out, results, rows, others)
    return results


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """``results.json`` of a result folder (or the file itself)."""
    results = read_results(path, command="math", key="benchmarks", kind="a math evaluation result")
    p = Path(path)
    results.setdefault("label", p.name if p.is_dir() else p.parent.name)
    return results


# ------------------------------------------------------------------------------------------ reporting


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{scale * value:.{digits}f}"


def format_table(results: dict) -> str:
    """Benchmarks × problems, k, pass@1 %, mean lengths, truncated %; an average row when several."""
    header = ("benchmark", "problems", "k", "pass@1 %", "len", "len correct", "len wrong", "trunc %")
    rows = [
        (
            name,
            str(b["problems"]),
            str(b["samples_per_problem"]),
            _fmt(b["pass@1"], 100),
            _fmt(b["mean_length"], digits=0),
            _fmt(b["mean_length_correct"], digits=0),
            _fmt(b["mean_length_incorrect"], digits=0),
            _fmt(b["truncated"], 100),
        )
        for name, b in results["benchmarks"].items()
    ]
    groups = [rows]
    if len(rows) > 1:
        avg = results.get("average") or {}
        pass1, length = _fmt(avg.get("pass@1"), 100), _fmt(avg.get("mean_length"), digits=0)
        groups.append([("average", "", "", pass1, length, "", "", "")])
    title = f"{results.get('label', '')} ({results.get('model', '')})"
    return "\n".join([title, *aligned_table(header, groups)])


def _unique_labels(runs: Sequence[dict]) -> list[str]:
    labels = [str(r.get("label") or f"run {i + 1}") for i, r in enumerate(runs)]
    return [f"{lab} ({i + 1})" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]


def plot_runs(runs: Sequence[dict], path: str | os.PathLike) -> Path:
    """pass@1 (%) against mean response length (tokens): one panel per benchmark (plus the average when
    there are several), one colored marker per run, so runs compare at a glance (up and left is better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        raise UserError("nothing to plot")
    names: list[str] = []
    for run in runs:
        names += [n for n in run["benchmarks"] if n not in names]
    panels = [*names, "average"] if len(names) > 1 else names
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows + 0.6), squeeze=False)
    labels = _unique_labels(runs)
    markers = "osD^vP*Xh<>"
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes.flat, panels):
        for i, run in enumerate(runs):
            entry = run.get("average") if panel == "average" else run["benchmarks"].get(panel)
            if not entry or entry.get("pass@1") is None or entry.get("mean_length") is None:
                continue
            x, y = entry["mean_length"], 100 * entry["pass@1"]
            ax.scatter(
                x, y, s=46, marker=markers[i % len(markers)], color=colors[i % len(colors)], label=labels[i]
            )
            ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        n = next((r["benchmarks"][panel]["problems"] for r in runs if panel in r["benchmarks"]), None)
        ax.set_title(panel + (f" (n={n})" if n else ""), fontsize=9)
        ax.set_xlabel("mean response length (tokens)", fontsize=8)
        ax.set_ylabel("pass@1 (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.margins(x=0.25, y=0.25)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, legend_labels = axes.flat[0].get_legend_handles_labels()
    seen = dict(zip(legend_labels, handles))
    for ax in axes.flat:  # runs missing from the first panel still get a legend entry
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(
        seen.values(), seen.keys(), loc="upper center", ncol=min(4, len(seen)), fontsize=8, frameon=False
    )
    shown = {(r.get("settings", {}).get("samples"), r.get("settings", {}).get("temperature")) for r in runs}
    k, temp = next(iter(shown))
    fig.suptitle(
        f"pass@1 vs mean length (k={k}, T={temp})"
        if len(shown) == 1
        else "pass@1 vs mean length (settings differ)",
        fontsize=10,
        y=0.02,
        va="bottom",
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.92))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""One table of every benchmark target: bench/results/README.md (``make bench`` runs this last).

    python -m bench.summary [--results bench/results]

Reads each benchmark's JSON: its ``targets`` list (the two older result files have their own layout, read
by the adapters below). A target's optional ``before`` is the same comparison for posttrain's code as it was
before two speed-ups, timed in the same run; only result files from the time that code was kept in bench/
have one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import harness

# (result file stem, command that produced it); the table follows this order
BENCHMARKS = [
    ("cpl_vs_trl", "python -m bench.cpl_vs_trl --threads 1"),
    ("rm_vs_trl", "python -m bench.rm_vs_trl --threads 1"),
    ("packing", "python -m bench.packing --threads 1"),
    ("drpo_step_time", "python -m bench.drpo_step_time --threads 1 --max-completion-length 32 --repeats 4"),
    ("principle_scoring", "python -m bench.principle_scoring --threads 1"),
    ("drpo_vllm", "python -m bench.drpo_vllm --threads 1"),
]


def _legacy_targets(name: str, result: dict) -> list[dict]:
    """Targets of result files written before bench/harness.py existed."""
    if name == "drpo_step_time":
        block = result["full_step"]
        return [
            harness.target(
                "DRPO vs TRL GRPOTrainer (full step)",
                "≤ 1.05×",
                "step time ratio",
                block,
                block["ratio_median"] <= 1.05,
            )
        ]
    if name == "principle_scoring":
        block = {
            "ratio_median": result["speedup_median"],
            "ratio_min": result["speedup_min"],
            "ratio_max": result["speedup_max"],
        }
        return [
            harness.target(
                f"Principle scoring K={result['k']}: shared-prefix KV reuse vs {result['k']} separate passes",
                "≥ 3×",
                "speed-up",
                block,
                result["speedup_median"] >= 3,
            )
        ]
    return []


def targets(name: str, result: dict) -> list[dict]:
    return result.get("targets") or _legacy_targets(name, result)


def _ratio(ratio: dict | None) -> str:
    return "—" if ratio is None else harness.fmt_range(ratio)


def table(results: Path) -> str:
    rows, details = [], []
    for name, command in BENCHMARKS:
        path = results / f"{name}.json"
        if not path.exists():
            rows.append(f"| {name} | — | — | not run | — | — |")
            continue
        result = json.loads(path.read_text())
        link = (
            f"[{name}.md]({name}.md)" if (results / f"{name}.md").exists() else f"[{name}.json]({name}.json)"
        )
        for t in targets(name, result):
            met = "yes" if t["met"] else "**NO**"
            goal = f"{t['target']} ({t['metric']})".replace("|", "\\|")  # a "|" would split the cell
            rows.append(
                f"| {t['pair']} | {goal} "
                f"| {_ratio(t.get('before'))} | {_ratio(t['ratio'])} | {met} | {link} |"
            )
        machine = result.get("machine", {})
        threads = machine.get("torch_threads", result.get("threads", "?"))
        details.append(
            f"- `{name}`: `{command}` — {machine.get('device', 'cpu')}, {threads} torch thread(s)"
            + (
                f", torch {machine['torch']}, transformers {machine.get('transformers')}, trl {machine.get('trl')}"
                if "torch" in machine
                else ""
            )
        )
    return "\n".join(
        [
            "# Benchmark summary",
            "",
            "Written by `python -m bench.summary` (the last step of `make bench`). Ratios are medians over "
            "alternating A/B rounds after a warm-up round, with the min–max of the per-round ratios; each "
            'linked page gives the settings, the raw numbers, tokens/s and peak memory. "before" is the '
            "same comparison, in the same run, for posttrain's code as it was before two speed-ups (CPL "
            "projecting every position onto the vocabulary; a gradient guard reading each gradient twice); "
            "that code was kept in bench/ for the comparison and has since been removed (git history has it), "
            'so only result files from then have the column. The packing rows have no speed target: "met" '
            "there means the packed loss equals the padded one; the ratio is packed/padded tokens/s.",
            "",
            "| pair | target | before | measured | met | details |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "Runs:",
            "",
            *details,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(harness.RESULTS))
    ns = p.parse_args(argv)
    text = table(Path(ns.results))
    (Path(ns.results) / "README.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])

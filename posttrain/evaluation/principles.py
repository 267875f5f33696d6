"""Held-out accuracy of a reward model on principle records (RLBFF's binary feedback).

Two numbers, so principle RMs and a Bradley–Terry baseline can be compared on the same records:

- ``binary_accuracy`` (principle RMs only): sign(reward) agrees with the Yes/No label.
- ``pairwise_accuracy`` (every RM): over the records sharing a (context, principle), the fraction of
  (Yes response, No response) pairs where the Yes response scores strictly higher. A Bradley–Terry RM
  does not see the principle, so this asks whether its single "how good" ranks the response that satisfies
  the principle above the one that does not.

Each comes with a 95% confidence interval from a bootstrap over *contexts* (the pairs and records of one
context share a prompt and responses, so they are not independent draws), and per principle family when
the records carry a ``family`` field. :func:`compare` gives the paired difference between two RMs scored on
the same records, with its bootstrap interval: the number to look at before calling one RM better.

"Partially" records are dropped, as in training.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.data.principle import adapt_principles, context_key
from posttrain.evaluation.tables import aligned_table
from posttrain.jsonl import read_jsonl

N_BOOTSTRAP = 2000
SCORES_FILE = "principle_scores.jsonl"


def score_records(rm, records: list[dict[str, Any]], *, source: str = "records", progress: bool = True):
    """Validated items ({"context", "response", "principle", "label"[, "family"]}) each with its "reward"."""
    from tqdm.auto import tqdm

    items, _ = adapt_principles(records, source)
    batch = 16
    for start in tqdm(range(0, len(items), batch), desc="scoring", disable=not progress):
        chunk = items[start : start + batch]
        rewards = rm.score_batch(
            [(it["context"], it["response"]) for it in chunk], [[it["principle"]] for it in chunk]
        )
        for item, reward in zip(chunk, rewards):
            item["reward"] = float(reward[0])
    return items


def pair_outcomes(scored: list[dict]) -> list[dict]:
    """Every (Yes, No) pair of records sharing a context and principle: {"context", "family", "win"}, where
    win means the Yes response scored strictly higher (a tie is a loss, as in RM-Bench)."""
    groups: dict[tuple[str, str], dict[int, list[dict]]] = defaultdict(lambda: {0: [], 1: []})
    for item in scored:
        groups[(context_key(item["context"]), item["principle"])][item["label"]].append(item)
    out = []
    for (context, _), group in groups.items():
        for yes in group[1]:
            for no in group[0]:
                out.append(
                    {"context": context, "family": yes.get("family"), "win": yes["reward"] > no["reward"]}
                )
    return out


def _by_context(outcomes: list[tuple[str, bool]]) -> dict[str, list[int]]:
    """context → [successes, trials]."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for context, ok in outcomes:
        counts[context][0] += int(ok)
        counts[context][1] += 1
    return counts


def cluster_bootstrap(
    a: dict[str, list[int]],
    b: dict[str, list[int]] | None = None,
    *,
    n: int = N_BOOTSTRAP,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap replicates of the pooled accuracy Σsuccesses/Σtrials, resampling clusters (contexts) with
    replacement; with ``b`` (same clusters and trials), replicates of accuracy(a) − accuracy(b) with the
    same resampled clusters for both (a paired bootstrap)."""
    keys = sorted(a)
    succ_a = np.array([a[k][0] for k in keys], dtype=float)
    trials = np.array([a[k][1] for k in keys], dtype=float)
    succ = succ_a - np.array([b[k][0] for k in keys], dtype=float) if b is not None else succ_a
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(keys), size=(n, len(keys)))
    return succ[picks].sum(axis=1) / trials[picks].sum(axis=1)


def _interval(replicates: np.ndarray) -> list[float]:
    lo, hi = np.percentile(replicates, [2.5, 97.5])
    return [float(lo), float(hi)]


def _accuracy(outcomes: list[tuple[str, bool]]) -> tuple[float, list[float]]:
    """(accuracy, 95% interval) of (context, correct) outcomes."""
    if not outcomes:
        return float("nan"), [float("nan"), float("nan")]
    accuracy = sum(ok for _, ok in outcomes) / len(outcomes)
    return accuracy, _interval(cluster_bootstrap(_by_context(outcomes)))


def _by_family(outcomes: list[tuple[str | None, bool]]) -> dict[str, float]:
    """family → accuracy of (family, correct) outcomes; records without a family are left out."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for family, ok in outcomes:
        if family:
            groups[family].append(ok)
    return {f: sum(v) / len(v) for f, v in sorted(groups.items())}


def summarize(scored: list[dict], form: str) -> dict[str, Any]:
    """Accuracies, their intervals and per-family breakdowns of scored records."""
    pairs = pair_outcomes(scored)
    accuracy, interval = _accuracy([(p["context"], p["win"]) for p in pairs])
    result: dict[str, Any] = {
        "records": len(scored),
        "pairs": len(pairs),
        "pairwise_accuracy": accuracy,
        "pairwise_ci95": interval,
        "form": form,
        "contexts": len({context_key(it["context"]) for it in scored}),
    }
    if warning := small_sample_warning(len({p["context"] for p in pairs}) if pairs else result["contexts"]):
        result["small_sample_warning"] = warning
    if by_family := _by_family([(p["family"], p["win"]) for p in pairs]):
        result["pairwise_accuracy_by_family"] = by_family
    if form != "bradley_terry":
        correct = [(it, (it["reward"] > 0) == bool(it["label"])) for it in scored]
        accuracy, interval = _accuracy([(context_key(it["context"]), ok) for it, ok in correct])
        result["binary_accuracy"], result["binary_ci95"] = accuracy, interval
        if by_family := _by_family([(it.get("family"), ok) for it, ok in correct]):
            result["binary_accuracy_by_family"] = by_family
    return result


def compare(scored: list[dict], baseline: list[dict]) -> dict[str, Any]:
    """Pairwise accuracy of ``scored`` minus that of ``baseline`` (two RMs' scores of the same records), with
    a paired cluster-bootstrap 95% interval and the share of bootstrap replicates where the difference is
    not positive (a one-sided bootstrap p-value for "scored is better")."""
    a, b = pair_outcomes(scored), pair_outcomes(baseline)
    if [p["context"] for p in a] != [p["context"] for p in b]:
        raise ValueError("compare: the two score lists are not of the same records")
    if not a:
        nan = float("nan")
        return {
            "pairwise_difference": nan,
            "pairwise_difference_ci95": [nan, nan],
            "p_not_better": nan,
            "pairs": 0,
            "contexts": 0,
        }
    counts_a = _by_context([(p["context"], p["win"]) for p in a])
    counts_b = _by_context([(p["context"], p["win"]) for p in b])
    diff = (sum(p["win"] for p in a) - sum(p["win"] for p in b)) / len(a)
    replicates = cluster_bootstrap(counts_a, counts_b)
    out = {
        "pairwise_difference": diff,
        "pairwise_difference_ci95": _interval(replicates),
        "p_not_better": float(np.mean(replicates <= 0)),
        "pairs": len(a),
        "contexts": len(counts_a),
    }
    if warning := small_sample_warning(len(counts_a)):
        out["small_sample_warning"] = warning
    return out


# A percentile bootstrap over fewer independent clusters than this gives intervals that are too narrow
# and jumpy; the results carry a warning then.
SMALL_SAMPLE_CONTEXTS = 30


def small_sample_warning(contexts: int) -> str | None:
    if contexts >= SMALL_SAMPLE_CONTEXTS:
        return None
    return (
        f"warning: only {contexts} contexts: bootstrap intervals from fewer than {SMALL_SAMPLE_CONTEXTS} "
        "independent contexts are rough (too narrow, and unstable from run to run); use more records"
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.3f}"


def format_table(summaries: dict[str, dict], comparisons: dict[str, dict] | None = None) -> str:
    """Terminal table: one row per principle family and an "all" row with 95% intervals; one pairwise and
    (for principle RMs) one binary column per model; then one line per comparison."""
    header = ["family"]
    for name, s in summaries.items():
        header += [f"{name} pairwise"] + ([f"{name} binary"] if "binary_accuracy" in s else [])
    keys = ("pairwise_accuracy_by_family", "binary_accuracy_by_family")
    families = sorted({f for s in summaries.values() for key in keys for f in s.get(key, {})})
    rows = []
    for family in families:
        row = [family]
        for s in summaries.values():
            row.append(_fmt(s.get("pairwise_accuracy_by_family", {}).get(family)))
            if "binary_accuracy" in s:
                row.append(_fmt(s.get("binary_accuracy_by_family", {}).get(family)))
        rows.append(row)
    total = ["all"]
    for s in summaries.values():
        total.append(
            f"{_fmt(s['pairwise_accuracy'])} [{_fmt(s['pairwise_ci95'][0])}, {_fmt(s['pairwise_ci95'][1])}]"
        )
        if "binary_accuracy" in s:
            total.append(
                f"{_fmt(s['binary_accuracy'])} [{_fmt(s['binary_ci95'][0])}, {_fmt(s['binary_ci95'][1])}]"
            )
    first = next(iter(summaries.values()))
    lines = [
        f"{first['records']} records, {first['pairs']} Yes-vs-No pairs; [95% interval, bootstrap over contexts]"
    ]
    lines += aligned_table(header, [rows, [total]] if rows else [[total]])
    for name, c in (comparisons or {}).items():
        lo, hi = c["pairwise_difference_ci95"]
        lines.append(
            f"pairwise {name}: {c['pairwise_difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] over {c['pairs']} pairs "
            f"in {c['contexts']} contexts; bootstrap share not better: {c['p_not_better']:.4f}"
        )
    warnings = [s.get("small_sample_warning") for s in summaries.values()]
    warnings += [c.get("small_sample_warning") for c in (comparisons or {}).values()]
    if warned := sorted({w for w in warnings if w}):
        lines[0] += " — " + "; ".join(warned)  # on the line that introduces the intervals
    return "\n".join(lines)


def format_principles(summary: dict) -> str:
    """One-line form of a summary for logs."""
    parts = [f"pairwise {_fmt(summary['pairwise_accuracy'])} ({summary['pairs']} pairs)"]
    if "binary_accuracy" in summary:
        parts.append(f"binary {_fmt(summary['binary_accuracy'])} ({summary['records']} records)")
    if summary.get("small_sample_warning"):
        parts.append(f"only {summary.get('contexts')} contexts: intervals are rough")
    return ", ".join(parts)


def evaluate_principles(
    rm, records: list[dict[str, Any]], *, source: str = "records", progress: bool = True
) -> dict:
    """Score every record with its own principle; return accuracies, intervals and counts. The scored
    records are under the ``"scored"`` key (not JSON: :func:`write_results` writes them to their own file)."""
    scored = score_records(rm, records, source=source, progress=progress)
    return {**summarize(scored, rm.form), "scored": scored}


def write_results(result: dict, out_dir: str | Path) -> Path:
    """``principle_eval.json`` (the summary) and, when present, ``principle_scores.jsonl`` (one line per
    record with its reward, so anyone can recompute or compare)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in result.items() if k != "scored"}
    if "scored" in result:
        with open(out / SCORES_FILE, "w") as f:
            for item in result["scored"]:
                f.write(json.dumps(item) + "\n")
    path = out / "principle_eval.json"
    path.write_text(json.dumps(summary, indent=2))
    return path


def read_scores(path: str | Path) -> list[dict]:
    """Scored records written by :func:`write_results` (a folder or the file itself)."""
    path = Path(path)
    return read_jsonl(path / SCORES_FILE if path.is_dir() else path)

"""Held-out accuracy of a reward model on principle records (RLBFF's binary feedback).

Two numbers, so principle RMs and a Bradley–Terry baseline can be compared on the same records:

- ``binary_accuracy`` (principle RMs only): sign(reward) agrees with the Yes/No label.
- ``pairwise_accuracy`` (every RM): over the records sharing a (context, principle), the fraction of
  (Yes response, No response) pairs where the Yes response scores strictly higher. A Bradley–Terry RM
  does not see the principle, so this asks whether its single "how good" ranks the response that satisfies
  the principle above the one that does not.

"Partially" records are dropped, as in training.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from posttrain.data.principle import adapt_principles


def evaluate_principles(
    rm, records: list[dict[str, Any]], *, source: str = "records", progress: bool = True
) -> dict:
    """Score every record with its own principle; return accuracies and counts."""
    from tqdm.auto import tqdm

    items, _ = adapt_principles(records, source)
    rewards = []
    batch = 16
    for start in tqdm(range(0, len(items), batch), desc="scoring", disable=not progress):
        chunk = items[start : start + batch]
        per_item = [[rec["principle"]] for rec in chunk]
        rewards.extend(
            r[0] for r in rm.score_batch([(rec["context"], rec["response"]) for rec in chunk], per_item)
        )
    groups: dict[str, dict[int, list[float]]] = defaultdict(lambda: {0: [], 1: []})
    for rec, reward in zip(items, rewards):
        key = json.dumps([rec["context"], rec["principle"]], sort_keys=True)
        groups[key][rec["label"]].append(reward)
    wins = pairs = 0
    for group in groups.values():
        for yes in group[1]:
            for no in group[0]:
                pairs += 1
                wins += yes > no
    result = {
        "records": len(items),
        "pairs": pairs,
        "pairwise_accuracy": wins / pairs if pairs else float("nan"),
        "form": rm.form,
    }
    if rm.form != "bradley_terry":
        correct = sum((r > 0) == bool(rec["label"]) for rec, r in zip(items, rewards))
        result["binary_accuracy"] = correct / len(items)
        by_family: dict[str, list[bool]] = defaultdict(list)
        for rec, reward in zip(items, rewards):
            if "family" in rec:
                by_family[rec["family"]].append((reward > 0) == bool(rec["label"]))
        if by_family:
            result["binary_accuracy_by_family"] = {f: sum(v) / len(v) for f, v in sorted(by_family.items())}
    return result


def write_results(result: dict, out_dir: str | Path) -> Path:
    path = Path(out_dir) / "principle_eval.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path

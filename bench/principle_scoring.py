"""Multi-principle scoring: K principles on one response, shared-prefix KV reuse vs K separate passes.

    python bench/principle_scoring.py [--model embedded:smollm2-135m-instruct] [--k 8] [--repeats 5]

Alternates the two paths after a warm-up, reports median wall time of each, the ratio, and the largest
difference between their rewards (they must agree within 1e-4). Writes bench/results/principle_scoring.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from posttrain.rewards.principle import PrincipleRewardModel

PRINCIPLES = [
    "The final answer is correct",
    "The response is at most 50 words long",
    "The response is written in English",
    "The response does not repeat the same sentence",
    "The response states the final answer in its first sentence",
    "The response is formatted as a bulleted list",
    "The response does not apologize",
    "The response is polite",
    "The response cites a source",
    "The response uses metric units",
    "The response avoids jargon",
    "The response answers every part of the question",
    "The response is free of spelling mistakes",
    "The response uses a friendly tone",
    "The response includes an example",
    "The response ends with a question",
]

CONTEXT = [
    {
        "role": "user",
        "content": "A bakery sells 24 muffins in the morning and twice as many in the afternoon. Each muffin "
        "costs $3. How much money does the bakery make in a day? Explain your reasoning step by step.",
    }
]
RESPONSE = (
    "In the morning the bakery sells 24 muffins. In the afternoon it sells twice as many, which is "
    "2 × 24 = 48 muffins. In total it sells 24 + 48 = 72 muffins in a day. Each muffin costs $3, so the "
    "bakery makes 72 × 3 = $216. First I found the afternoon sales by doubling the morning sales, then I "
    "added both amounts to get the daily total, and finally I multiplied the number of muffins by the "
    "price of one muffin. The bakery makes $216 in a day."
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--out", default="bench/results/principle_scoring.json")
    ns = parser.parse_args()
    if ns.threads:
        torch.set_num_threads(ns.threads)
    rm = PrincipleRewardModel.from_pretrained(ns.model)
    principles = PRINCIPLES[: ns.k]

    def shared():
        return rm.score(CONTEXT, RESPONSE, principles)

    def separate():  # K independent single-sequence forward passes, the way a naive caller scores
        return [rm.score(CONTEXT, RESPONSE, [p])[0] for p in principles]

    shared(), separate()  # warm-up
    times = {"shared_prefix": [], "separate": []}
    diff = 0.0
    for _ in range(ns.repeats):
        for name, fn in (("shared_prefix", shared), ("separate", separate)):
            start = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - start)
            if name == "shared_prefix":
                ref = out
            else:
                diff = max(diff, max(abs(a - b) for a, b in zip(ref, out)))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [b / a for a, b in zip(times["shared_prefix"], times["separate"])]
    rendered = rm.tokenizer.apply_chat_template(
        CONTEXT + [{"role": "assistant", "content": RESPONSE}], tokenize=True
    )
    prefix_tokens = len(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)
    result = {
        "model": ns.model,
        "k": ns.k,
        "prefix_tokens_approx": prefix_tokens,
        "median_s": med,
        "speedup_median": med["separate"] / med["shared_prefix"],
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
        "max_abs_reward_diff": diff,
        "threads": torch.get_num_threads(),
    }
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(result, indent=2))
    print(f"| K | shared prefix (s) | {ns.k} separate passes (s) | speed-up (min–max) | max |Δreward| |")
    print("|---|---|---|---|---|")
    print(
        f"| {ns.k} | {med['shared_prefix']:.3f} | {med['separate']:.3f} | "
        f"{result['speedup_median']:.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | {diff:.2e} |"
    )


if __name__ == "__main__":
    main()

"""Multi-principle scoring: K principles on one response, shared-prefix KV reuse vs K separate passes.

    python -m bench.principle_scoring [--model embedded:smollm2-135m-instruct] [--k 8] [--repeats 5]

Target: shared-prefix scoring of K = 8 principles ≥ 3× faster than 8 separate forward passes.
Alternates the two paths after a warm-up (bench/harness.py), reports median wall time of each, the ratio,
and the largest difference between their rewards (they must agree within 1e-4). Writes
bench/results/principle_scoring.json and .md.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from bench import harness

NAME = "principle_scoring"
ARMS = ("shared_prefix", "separate")
TARGET = 3.0
QUICK = {"k": 2, "repeats": 1}

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


def run(ns) -> dict:
    from posttrain.rewards.principle import PrincipleRewardModel

    rm = PrincipleRewardModel.from_pretrained(ns.model)
    principles = PRINCIPLES[: ns.k]
    rewards = {}

    def timed(name: str) -> float:
        start = time.perf_counter()
        if name == "shared_prefix":
            rewards[name] = rm.score(CONTEXT, RESPONSE, principles)
        else:  # K independent single-sequence forward passes, the way a naive caller scores
            rewards[name] = [rm.score(CONTEXT, RESPONSE, [p])[0] for p in principles]
        elapsed = time.perf_counter() - start
        if len(rewards) == 2:
            diffs.append(max(abs(a - b) for a, b in zip(rewards["shared_prefix"], rewards["separate"])))
        return elapsed

    diffs: list[float] = []
    times = harness.alternate(NAME, "score", ARMS, ns.repeats, timed)
    med = {k: statistics.median(v) for k, v in times.items()}
    speedup = harness.ratio_block(times["separate"], times["shared_prefix"])  # separate / shared
    rendered = rm.tokenizer.apply_chat_template(
        CONTEXT + [{"role": "assistant", "content": RESPONSE}], tokenize=True
    )
    prefix_tokens = len(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)
    result = {
        "benchmark": NAME,
        "model": ns.model,
        "quick": ns.quick,
        "machine": harness.machine_info(),
        "k": ns.k,
        "repeats": ns.repeats,
        "prefix_tokens_approx": prefix_tokens,
        "median_s": med,
        "raw_s": times,
        "speedup_median": speedup["ratio_median"],
        "speedup_min": speedup["ratio_min"],
        "speedup_max": speedup["ratio_max"],
        "max_abs_reward_diff": max(diffs),
        "threads": torch.get_num_threads(),
        "targets": [
            harness.target(
                f"Principle scoring K={ns.k}: shared-prefix KV reuse vs {ns.k} separate passes",
                f"≥ {TARGET:g}×",
                "speed-up",
                speedup,
                speedup["ratio_median"] >= TARGET,
            )
        ],
    }
    table = "\n".join(
        [
            "# Multi-principle scoring: shared-prefix KV reuse vs separate passes",
            "",
            f"Model `{ns.model}` on {result['machine']['device']} ({result['threads']} torch threads), one "
            f"response (~{prefix_tokens} tokens of context + response), {ns.repeats} alternating rounds after "
            f"a warm-up round. Target: ≥ {TARGET:g}× at K = 8.",
            "",
            f"| K | shared prefix (s) | {ns.k} separate passes (s) | speed-up (min–max) | max abs reward diff |",
            "|---|---|---|---|---|",
            f"| {ns.k} | {med['shared_prefix']:.3f} | {med['separate']:.3f} | "
            f"{harness.fmt_ratio(speedup)} | {result['max_abs_reward_diff']:.2e} |",
            "",
        ]
    )
    harness.write_outputs(result, ns.out, table)
    return result


def main(argv: list[str] | None = None) -> dict:
    p = harness.parser(__doc__, NAME, repeats=5)
    p.add_argument("--k", type=int, default=8)
    return harness.run_main(p.parse_args(argv), QUICK, run)


if __name__ == "__main__":
    main(sys.argv[1:])

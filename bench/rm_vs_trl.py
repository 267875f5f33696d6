"""Principle RM training (Yes/No form) vs TRL's RewardTrainer (Bradley–Terry), tokens/s per sequence.

    python -m bench.rm_vs_trl [--model embedded:smollm2-135m-instruct] [--repeats 5] [--threads 1] [--quick]

Target: the principle RM trains at ≥ 1.0 × the RewardTrainer's tokens/s.

The two trainers learn from different records by nature, so the comparison is per sequence processed:

- principle RM (``RLBFFTrainer``, ``form: yes_no``): a causal LM reads [context, assistant: response,
  user: evaluation question with the principle] and is trained on logit(Yes) − logit(No) at the next
  token; ``--sequences`` principle records per step (data/rlbff/principles_train.jsonl).
- Bradley–Terry (TRL ``RewardTrainer``): a sequence-classification head (the same checkpoint, one output)
  on [prompt, assistant: response], −log σ(r⁺ − r⁻); ``--sequences`` / 2 pairs per step, i.e. the same
  number of sequences forwarded (data/rlbff/principles_pairs_train.jsonl, built from the same contexts and
  responses).

Both: same checkpoint, optimizer (AdamW, constant learning rate), clipping, seed, fp32 on CPU, no gradient
checkpointing, data shuffled once with the seed and read in order. Timed: ``trainer.train()`` blocks of
``--steps`` optimizer steps, on_step_begin → on_step_end (bench/harness.py). tokens/s = non-padding
tokens of every sequence the trainer forwards in a step / median step time; the principle RM's sequences
are longer (the evaluation question), which is why tokens, not steps, are compared.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import harness

NAME = "rm_vs_trl"
ARMS = ("principle_rm", "reward_trainer")
TARGET = 1.0  # principle RM tokens/s ≥ TARGET × RewardTrainer tokens/s
RECORDS = harness.ROOT / "data" / "rlbff" / "principles_train.jsonl"
PAIRS = harness.ROOT / "data" / "rlbff" / "principles_pairs_train.jsonl"
QUICK = {"sequences": 4, "steps": 1, "repeats": 1, "records": 8}


def read_jsonl(path: Path, n: int, seed: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def principle_dataset(tokenizer, ns):
    from datasets import Dataset

    from posttrain.data.principle import adapt_principles, tokenize_principles

    records, _ = adapt_principles(read_jsonl(RECORDS, ns.records, ns.seed), str(RECORDS))
    return Dataset.from_list(tokenize_principles(records, tokenizer, max_length=ns.max_length))


def pair_dataset(ns):
    from datasets import Dataset

    rows = read_jsonl(PAIRS, ns.records, ns.seed)
    return Dataset.from_list(
        [
            {
                "prompt": r["prompt"],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in rows
        ]
    )


def build(arm: str, ns, model_path: str, out_dir: str):
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        set_seed,
    )

    set_seed(ns.seed)
    if arm == "principle_rm":
        from posttrain.trainers.rlbff_config import RLBFFConfig
        from posttrain.trainers.rlbff_trainer import RLBFFTrainer

        tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        args = RLBFFConfig(
            **harness.training_args(ns, out_dir, per_device_train_batch_size=ns.sequences),
            form="yes_no",
            max_length=ns.max_length,
        )
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        trainer = RLBFFTrainer(
            model, args, train_dataset=principle_dataset(tokenizer, ns), processing_class=tokenizer
        )
    else:
        from trl import RewardConfig, RewardTrainer

        tokenizer = AutoTokenizer.from_pretrained(model_path)
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        args = RewardConfig(
            **harness.training_args(ns, out_dir, per_device_train_batch_size=ns.sequences // 2),
            max_length=ns.max_length,
            disable_dropout=True,
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=1, dtype=torch.float32
        )
        model.config.pad_token_id = tokenizer.pad_token_id
        trainer = RewardTrainer(
            model=model, args=args, train_dataset=pair_dataset(ns), processing_class=tokenizer
        )
    harness.attach_timer(trainer)
    return trainer


def run(ns) -> dict:
    from posttrain.models import resolve_model_path

    load_start, wall = harness.load_average(), time.perf_counter()
    model_path = resolve_model_path(ns.model)
    tmp = tempfile.TemporaryDirectory(prefix="rm-bench-")
    names = ARMS
    trainers = {arm: build(arm, ns, model_path, f"{tmp.name}/{arm}") for arm in names}

    def train_block(arm: str) -> list[float]:
        return harness.train_block(trainers[arm])

    data = {arm: harness.batch_stats(trainers[arm], ns.steps) for arm in names}
    blocks = harness.alternate(NAME, "step", names, ns.repeats, train_block)

    arms = {arm: harness.arm_stats(blocks[arm], data[arm]) for arm in names}
    harness.progress(NAME, "memory passes")
    harness.memory_passes(arms, trainers, train_block)

    rm, bt = arms["principle_rm"], arms["reward_trainer"]
    tokens_ratio = harness.ratio_block(rm["tokens_per_s_raw"], bt["tokens_per_s_raw"])
    tokens_ratio["step_time_ratio"] = rm["time_s"]["median"] / bt["time_s"]["median"]
    tokens_ratio["sequences_per_s_ratio"] = rm["sequences_per_s"] / bt["sequences_per_s"]
    target = harness.target(
        "Principle RM (Yes/No) vs TRL RewardTrainer, per sequence",
        f"≥ {TARGET}× tokens/s",
        "tokens/s ratio",
        tokens_ratio,
        tokens_ratio["ratio_median"] >= TARGET,
    )
    result = {
        **harness.result_header(NAME, ns, model_path, load_start, wall),
        "settings": {
            "arms": list(names),
            "sequences_per_step": ns.sequences,
            "principle_records_per_step": ns.sequences,
            "pairs_per_step": ns.sequences // 2,
            "steps_per_block": ns.steps,
            "repeats": ns.repeats,
            "warmup_rounds": 1,
            "records": ns.records,
            "data": [str(RECORDS.relative_to(harness.ROOT)), str(PAIRS.relative_to(harness.ROOT))],
            "max_length": ns.max_length,
            "learning_rate": ns.learning_rate,
            "seed": ns.seed,
            "principle_rm_padding": "left (the RM reads the last position)",
            "reward_trainer_padding": "right",
        },
        "arms": arms,
        "tokens_per_s_ratio": tokens_ratio,
        "targets": [target],
        "notes": [
            "ratio = median(principle RM tokens/s) / median(RewardTrainer tokens/s) over the rounds; spread = "
            "min–max of the per-round ratios.",
            "tokens = non-padding tokens of every sequence forwarded in a step: the RM's principle records, "
            "the RewardTrainer's chosen and rejected sequences; both forward the same number of sequences.",
            "step = on_step_begin → on_step_end of trainer.train() (forward, backward, clipping, optimizer).",
            f"peak memory: {harness.memory_kind()}.",
        ],
    }
    harness.write_outputs(result, ns.out, markdown(result))
    tmp.cleanup()
    return result


def markdown(result: dict) -> str:
    s, arms, r = result["settings"], result["arms"], result["tokens_per_s_ratio"]
    lines = [
        "# Principle RM (Yes/No) vs TRL RewardTrainer throughput",
        "",
        f"Model `{result['model']}` on {result['machine']['device']} ({result['machine']['torch_threads']} "
        f"torch threads), {s['sequences_per_step']} sequences per step ({s['principle_records_per_step']} "
        f"principle records / {s['pairs_per_step']} pairs), {s['steps_per_block']} step(s) per block, "
        f"{s['repeats']} alternating rounds after a warm-up round. Target: principle RM ≥ 1.0 × "
        "RewardTrainer tokens/s.",
        "",
        "| trainer | step median (s) | min–max (s) | sequences/step | tokens/step (padded) | tokens/s "
        "| sequences/s | peak mem (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "principle_rm": "posttrain principle RM (yes_no)",
        "reward_trainer": "TRL RewardTrainer (BT)",
    }
    for arm in arms:
        a = arms[arm]
        lines.append(
            f"| {labels[arm]} | {a['time_s']['median']:.3f} | {a['time_s']['min']:.3f}–{a['time_s']['max']:.3f} "
            f"| {a['sequences_per_step']:.0f} | {a['tokens_per_step']:.0f} ({a['padded_positions_per_step']:.0f}) "
            f"| {a['tokens_per_s']:.0f} | {a['sequences_per_s']:.2f} | {harness.fmt_mem(a['peak_memory'])} |"
        )
    t = result["targets"][0]
    lines += [
        "",
        f"tokens/s ratio (principle RM / RewardTrainer): **{harness.fmt_ratio(r)}** — target {t['target']}: "
        f"{'met' if t['met'] else 'NOT met'}; sequences/s ratio {r['sequences_per_s_ratio']:.3f}, step-time "
        f"ratio {r['step_time_ratio']:.3f}.",
        "",
        *[f"- {note}" for note in result["notes"]],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = harness.parser(__doc__, NAME, repeats=5, steps=2)
    harness.add_training_options(p)
    return harness.run_main(p.parse_args(argv), QUICK, run)


if __name__ == "__main__":
    main(sys.argv[1:])

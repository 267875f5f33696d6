"""CPL vs TRL's DPOTrainer (with its reference model) and CPOTrainer (reference-free), side by side.

    python -m bench.cpl_vs_trl [--model embedded:smollm2-135m-instruct] [--repeats 5] [--threads 1] [--quick]

Targets: CPL step time ≤ 0.6 × DPO's and ≤ 0.95 × CPO's (sigmoid loss, cpo_alpha = 0: no NLL).

Three trainers share everything but the method: the same model weights (each loads the checkpoint; DPO
builds its frozen reference the TRL way, ``precompute_ref_log_probs=False``), the same preference pairs
(data/demo/preferences.jsonl, shuffled once with the seed, then read in order, so every arm trains on the
same batches), batch size (``--batch-size`` pairs = 2× sequences), max lengths (none of the demo pairs is
truncated), optimizer (AdamW, constant learning rate), gradient clipping, fp32 on CPU / bf16 on GPU,
no gradient checkpointing. Method settings: CPL paper defaults (α 0.1, λ 0.5, no BC), DPO
``loss_type="sigmoid"`` with the default β, CPO ``loss_type="sigmoid"``, ``cpo_alpha=0``.

Timed: ``trainer.train()`` blocks of ``--steps`` optimizer steps from the start of the data; a callback
times on_step_begin → on_step_end (forward(s), backward, clipping, optimizer; batch fetch and logging
excluded). Blocks alternate between the arms after a warm-up round (bench/harness.py). tokens/s counts
the non-padding tokens of every sequence the policy trains on (prompt + response; DPO's reference
forward reads the same tokens again and is not counted twice). CPO's tokenizer appends one EOS token to
each response (TRL's ``add_eos_token_if_needed``), so its batches hold one token more per sequence: the
step-time ratio is the target, tokens/s is reported beside it.
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

NAME = "cpl_vs_trl"
ARMS = ("cpl", "dpo", "cpo")
TARGETS = {"dpo": 0.6, "cpo": 0.95}  # CPL step time ≤ target × the TRL trainer's
DATA = harness.ROOT / "data" / "demo" / "preferences.jsonl"
QUICK = {"batch_size": 2, "steps": 1, "repeats": 1, "records": 4}


def load_pairs(path: Path, n: int, seed: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def conversational(rows: list[dict]) -> list[dict]:
    """TRL's conversational form of plain prompt/chosen/rejected pairs (CPL reads the plain form and
    renders it with the same chat template)."""
    return [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in rows
    ]


def build(arm: str, ns, model_path: str, rows: list[dict], out_dir: str):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_seed(ns.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    common = harness.training_args(ns, out_dir)
    lengths = {"max_length": ns.max_length}
    if arm == "cpl":
        from posttrain.trainers.cpl_config import CPLConfig
        from posttrain.trainers.cpl_trainer import CPLTrainer

        args = CPLConfig(**common, **lengths, max_prompt_length=ns.max_length // 2)
        trainer = CPLTrainer(model, args, train_dataset=rows, processing_class=tokenizer)
    elif arm == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, **lengths, loss_type=["sigmoid"], precompute_ref_log_probs=False)
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(conversational(rows)),
            processing_class=tokenizer,
        )
    else:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        args = CPOConfig(**common, **lengths, loss_type="sigmoid", cpo_alpha=0.0)
        trainer = CPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(conversational(rows)),
            processing_class=tokenizer,
        )
    harness.attach_timer(trainer)
    return trainer


def cpo_rows(batch: dict) -> tuple[list[list[int]], int]:
    """CPO's collator keeps chosen and rejected apart; the trainer pads both to one length."""
    seqs = [
        row[mask.bool()].tolist()
        for side in ("chosen", "rejected")
        for row, mask in zip(batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"])
    ]
    width = max(batch["chosen_attention_mask"].shape[1], batch["rejected_attention_mask"].shape[1])
    return seqs, len(seqs) * width


def run(ns) -> dict:
    from posttrain.models import resolve_model_path

    load_start, wall = harness.load_average(), time.perf_counter()
    model_path = resolve_model_path(ns.model)
    rows = load_pairs(DATA, ns.records, ns.seed)
    tmp = tempfile.TemporaryDirectory(prefix="cpl-bench-")
    names = ARMS
    trainers = {arm: build(arm, ns, model_path, rows, f"{tmp.name}/{arm}") for arm in names}

    def train_block(arm: str) -> list[float]:
        return harness.train_block(trainers[arm])

    data = {
        arm: harness.batch_stats(trainers[arm], ns.steps, cpo_rows if arm == "cpo" else None) for arm in names
    }
    eos = trainers["cpl"].processing_class.eos_token_id

    def same_sequences(mine: list, theirs: list, strip_eos: bool) -> bool:
        if strip_eos:  # CPO appends one EOS to each response
            theirs = [ids[:-1] if ids and ids[-1] == eos else ids for ids in theirs]
        return sorted(map(tuple, mine)) == sorted(map(tuple, theirs))

    same = {
        arm: [same_sequences(a["ids"], b["ids"], arm == "cpo") for a, b in zip(data["cpl"], data[arm])]
        for arm in ARMS[1:]
    }
    blocks = harness.alternate(NAME, "step", names, ns.repeats, train_block)

    arms = {arm: harness.arm_stats(blocks[arm], data[arm]) for arm in names}
    harness.progress(NAME, "memory passes")
    harness.memory_passes(arms, trainers, train_block)

    pairs = {}
    for other in ARMS[1:]:
        block = harness.ratio_block(arms["cpl"]["time_s"]["raw"], arms[other]["time_s"]["raw"])
        block["tokens_per_s_ratio"] = arms["cpl"]["tokens_per_s"] / arms[other]["tokens_per_s"]
        block["same_sequences"] = all(same[other])
        pairs[f"cpl_vs_{other}"] = block
    targets = []
    for other in ARMS[1:]:
        block = pairs[f"cpl_vs_{other}"]
        label = f"CPL vs TRL {other.upper()}Trainer" + (
            " (with reference model)" if other == "dpo" else " (α=0)"
        )
        met = block["ratio_median"] <= TARGETS[other]
        t = harness.target(label, f"≤ {TARGETS[other]}×", "step time ratio", block, met)
        targets.append(t)
    result = {
        **harness.result_header(NAME, ns, model_path, load_start, wall),
        "settings": {
            "arms": list(names),
            "pairs_per_step": ns.batch_size,
            "steps_per_block": ns.steps,
            "repeats": ns.repeats,
            "warmup_rounds": 1,
            "records": len(rows),
            "data": str(DATA.relative_to(harness.ROOT)),
            "max_length": ns.max_length,
            "learning_rate": ns.learning_rate,
            "seed": ns.seed,
            "bf16": trainers["cpl"].args.bf16,
            "dpo": {"loss_type": "sigmoid", "beta": trainers["dpo"].args.beta, "reference": "frozen copy"},
            "cpo": {"loss_type": "sigmoid", "cpo_alpha": 0.0, "beta": trainers["cpo"].args.beta},
            "cpl": {k: getattr(trainers["cpl"].args, k) for k in ("alpha", "bias", "gamma", "bc_weight")},
        },
        "arms": arms,
        "pairs": pairs,
        "targets": targets,
        "notes": [
            "ratio = median(CPL step time) / median(other step time); spread = min–max of the per-round ratios.",
            "step = on_step_begin → on_step_end of trainer.train(): forward(s), backward, gradient clipping, "
            "optimizer; mean over each block's steps.",
            "tokens/s = non-padding tokens of the sequences the policy trains on per step / median step time.",
            "same_sequences: the policy's token sequences are identical to CPL's in every timed step (for CPO "
            "after removing the one EOS token it appends to each response).",
            f"peak memory: {harness.memory_kind()}; state = parameters held and optimizer state.",
        ],
    }
    harness.write_outputs(result, ns.out, markdown(result))
    tmp.cleanup()
    return result


def markdown(result: dict) -> str:
    s, arms = result["settings"], result["arms"]
    lines = [
        "# CPL vs TRL DPOTrainer / CPOTrainer step time",
        "",
        f"Model `{result['model']}` on {result['machine']['device']} ({result['machine']['torch_threads']} "
        f"torch threads), {s['pairs_per_step']} pairs (= {2 * s['pairs_per_step']} sequences) per step from "
        f"`{s['data']}`, {s['steps_per_block']} step(s) per block, {s['repeats']} alternating rounds after a "
        f"warm-up round, learning rate {s['learning_rate']}. Targets: CPL ≤ 0.6 × DPO, ≤ 0.95 × CPO.",
        "",
        "| trainer | step median (s) | min–max (s) | tokens/step (padded) | tokens/s | peak mem (MiB) "
        "| params + ref + optimizer (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "cpl": "posttrain CPL",
        "dpo": "TRL DPO (+ reference)",
        "cpo": "TRL CPO (α=0)",
    }
    for arm in arms:
        a, st = arms[arm], arms[arm]["state"]
        lines.append(
            f"| {labels[arm]} | {a['time_s']['median']:.3f} | {a['time_s']['min']:.3f}–{a['time_s']['max']:.3f} "
            f"| {a['tokens_per_step']:.0f} ({a['padded_positions_per_step']:.0f}) | {a['tokens_per_s']:.0f} "
            f"| {harness.fmt_mem(a['peak_memory'])} | {st['policy_params_mib']:.0f} + "
            f"{st['reference_params_mib']:.0f} + {st['optimizer_state_mib']:.0f} |"
        )
    lines += [
        "",
        "| pair | target | step-time ratio (min–max) | tokens/s ratio | same sequences | met |",
        "|---|---|---|---|---|---|",
    ]
    for t, other in zip(result["targets"], ARMS[1:]):
        block = result["pairs"][f"cpl_vs_{other}"]
        lines.append(
            f"| {t['pair']} | {t['target']} | {harness.fmt_ratio(block)} "
            f"| {block['tokens_per_s_ratio']:.3f} | {block['same_sequences']} | {'yes' if t['met'] else 'NO'} |"
        )
    lines += ["", *[f"- {note}" for note in result["notes"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = harness.parser(__doc__, NAME, repeats=5, steps=2)
    harness.add_training_options(p)
    return harness.run_main(p.parse_args(argv), QUICK, run)


if __name__ == "__main__":
    main(sys.argv[1:])

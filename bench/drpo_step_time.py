"""DRPO vs GRPO step time: what the DRPO objective costs on top of TRL's GRPO at the same settings.

    python -m bench.drpo_step_time [--model embedded:smollm2-135m-instruct] [--repeats 5] [--quick]

Requirement checked: DRPO adds at most 5% step time over GRPO at the same settings.

Two DRPOTrainers are built with identical settings except ``objective`` ("drpo" vs "grpo"): same model
weights, prompts (short arithmetic questions with an ``answer`` column), reward (math_correctness), seed,
group size and batch size. Two things are timed, each as alternating A/B repetitions after a warm-up pair
(the order within a pair alternates too), reporting medians and the DRPO/GRPO ratio with its min–max spread:

- loss + backward: one rollout batch is generated once (by the DRPO trainer, so micro-batches hold whole
  groups) and both trainers run ``compute_loss`` + ``backward`` on exactly the same inputs. This is the only
  code DRPO changes besides a group-wise shuffle and a few rollout statistics.
- full step: ``trainer.train()`` blocks of ``--steps`` optimizer steps (rollout + rewards + loss + backward +
  clipping + optimizer); a callback times on_step_begin → on_step_end, TRL's own ``step_time`` (rollout +
  loss + backward) is recorded too. Every step reseeds the RNG with seed + step, and by default the learning
  rate is 0 (the optimizer still does all its work), so both trainers sample identical completions and the
  ratio compares equal work; the per-token ratio is reported as well for runs with ``--learning-rate > 0``,
  where the two policies (hence completion lengths) drift apart.

Peak memory is measured in a separate, untimed pass per objective: the peak of torch.cuda.max_memory_allocated
on GPU; on CPU the peak resident set size (psutil, sampled every 5 ms) above the RSS just before the region.

On a shared or small CPU machine pass ``--threads 1``: with several OpenMP threads, a thread that the OS
deschedules stalls every operator at its barrier, which inflated times 3–15× (and made them mostly noise) on a
loaded 2-core machine. The CPU run in bench/results used ``--threads 1 --max-completion-length 32
--repeats 4`` (about 11 minutes there; a full step took ~43 s, so 64 tokens would not fit).

Writes bench/results/drpo_step_time.json (machine, settings, per-repetition raw numbers) and
bench/results/drpo_step_time.md (the table); ``--out`` moves both (the .md next to the .json).
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import sys
import tempfile
import time

import torch

from bench import harness
from bench.harness import PeakMemory, ratio_block, summary, sync

NAME = "drpo_step_time"
OBJECTIVES = ("drpo", "grpo")  # A (measured), B (baseline)
LIMIT = 1.05  # the requirement: DRPO ≤ 1.05 × GRPO
QUICK = {
    "num_generations": 2,
    "batch_size": 4,
    "max_completion_length": 8,
    "repeats": 1,
    "steps": 1,
    "prompts": 8,
}


# ---------------------------------------------------------------------------------------------- helpers


def arithmetic_prompts(n: int, seed: int):
    """n conversational prompts "What is a ± b? …" with the gold answer in an ``answer`` column."""
    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        op = rng.choice("+-")
        value = a + b if op == "+" else a - b
        question = f"What is {a} {op} {b}? Put the final answer in \\boxed{{}}."
        rows.append({"prompt": [{"role": "user", "content": question}], "answer": str(value)})
    return Dataset.from_list(rows)


# ---------------------------------------------------------------------------------------------- trainers


def build_trainer(objective: str, ns, model_path: str, dataset, out_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from posttrain.rewards.math import math_correctness
    from posttrain.trainers.drpo_config import DRPOConfig
    from posttrain.trainers.drpo_trainer import DRPOTrainer

    cuda = torch.cuda.is_available()

    class StepTimer(harness.StepTimer):
        """Reseeds each step so both trainers sample alike; keeps TRL's log rows and a fingerprint of
        each step's completions."""

        def __init__(self):
            super().__init__()
            self.logs: list[dict] = []
            self.digests: list[str] = []
            self.trainer = None

        def on_step_begin(self, args, state, control, **kwargs):
            set_seed(args.seed + state.global_step)
            super().on_step_begin(args, state, control, **kwargs)

        def on_step_end(self, args, state, control, **kwargs):
            super().on_step_end(args, state, control, **kwargs)
            # fingerprint of the step's sampled completions (TRL keeps the last generation batch's texts)
            texts = json.dumps(list(self.trainer._logs["completion"]), sort_keys=True, default=str)
            self.digests.append(hashlib.sha1(texts.encode()).hexdigest()[:16])

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "step_time" in logs:
                self.logs.append(dict(logs))

    args = DRPOConfig(
        output_dir=out_dir,
        objective=objective,
        updates_per_rollout=1,  # every step generates: the full step includes its rollout
        num_generations=ns.num_generations,
        per_device_train_batch_size=ns.batch_size,
        max_completion_length=ns.max_completion_length,
        learning_rate=ns.learning_rate,
        lr_scheduler_type="constant",
        max_steps=ns.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=ns.seed,
        use_cpu=not cuda,
        bf16=cuda,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_seed(ns.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    trainer = DRPOTrainer(
        model=model,
        reward_funcs=[math_correctness],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    harness.attach_timer(trainer, StepTimer()).trainer = trainer
    return trainer


def rollout(trainer, seed: int) -> dict:
    """One generation batch, scored and split the way the trainer's training step sees it."""
    from transformers import set_seed

    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    set_seed(seed)
    inputs = trainer._prepare_inputs(batch)
    trainer._metrics["train"].clear()  # keep the rollout's statistics out of the timed runs' logs
    return inputs


def loss_backward(trainer, inputs: dict) -> float:
    """Seconds for compute_loss + backward on fixed inputs (gradients are cleared outside the timing)."""
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    sync()
    start = time.perf_counter()
    with trainer.accelerator.autocast():
        loss = trainer.compute_loss(model, inputs)
    loss.backward()
    sync()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def train_block(trainer) -> tuple[list[float], list[dict], list[str]]:
    """Run ``args.max_steps`` optimizer steps; return this block's step wall times, log rows and
    fingerprints of the sampled completions."""
    timer = trainer.step_timer
    n_times, n_logs = len(timer.times), len(timer.logs)
    trainer._metrics["train"].clear()
    trainer.train()
    return timer.times[n_times:], timer.logs[n_logs:], timer.digests[n_times:]


def alternate(label: str, repeats: int, run) -> dict[str, list]:
    return harness.alternate(NAME, label, OBJECTIVES, repeats, run)


def progress(message: str) -> None:
    harness.progress(NAME, message)


# ---------------------------------------------------------------------------------------------- report


def markdown(result: dict) -> str:
    s, lb, fs = result["settings"], result["loss_backward"], result["full_step"]
    lines = [
        "# DRPO vs GRPO step time",
        "",
        f"Model `{result['model']}` on {result['machine']['device']} "
        f"({result['machine']['torch_threads']} torch threads), {s['num_generations']} answers per prompt, "
        f"per-device batch {s['per_device_train_batch_size']}, max completion {s['max_completion_length']} "
        f"tokens, learning rate {s['learning_rate']}, {s['repeats']} alternating repetitions after a warm-up "
        f"pair ({s['steps_per_block']} step(s) per full-step block). Requirement: DRPO ≤ 1.05 × GRPO.",
        "",
        "| part | DRPO median (s) | GRPO median (s) | DRPO/GRPO (min–max) | DRPO tok/s | GRPO tok/s "
        "| DRPO peak mem (MiB) | GRPO peak mem (MiB) | ≤ 1.05 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def row(label, block, tokens_key):
        d, g = block["drpo"], block["grpo"]
        return (
            f"| {label} | {d['time_s']['median']:.3f} | {g['time_s']['median']:.3f} | "
            f"{block['ratio_median']:.3f} ({block['ratio_min']:.3f}–{block['ratio_max']:.3f}) | "
            f"{d[tokens_key]:.0f} | {g[tokens_key]:.0f} | "
            f"{harness.fmt_mem(d['peak_memory'])} | {harness.fmt_mem(g['peak_memory'])} | "
            f"{'yes' if block['ratio_median'] <= LIMIT else 'NO'} |"
        )

    lines.append(row("loss + backward", lb, "completion_tokens_per_s"))
    lines.append(row("full step", fs, "completion_tokens_per_s"))
    lines += [
        "",
        f"Loss + backward inputs: {lb['rows']} rows, {lb['completion_tokens']} completion tokens "
        f"({lb['padded_tokens']} padded prompt + completion positions).",
        f"Full step: mean completion length DRPO {fs['drpo']['mean_completion_length']:.1f} / GRPO "
        f"{fs['grpo']['mean_completion_length']:.1f} tokens; identical rollouts: {fs['rollouts_identical']}; "
        f"per-token ratio (s per completion token) {fs['per_token_ratio_median']:.3f} "
        f"({fs['per_token_ratio_min']:.3f}–{fs['per_token_ratio_max']:.3f}); TRL step_time ratio "
        f"(rollout + loss + backward, no optimizer) {fs['trl_step_time_ratio_median']:.3f}.",
        "",
        *[f"- {note}" for note in result["notes"]],
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    parser = harness.parser(__doc__, NAME, repeats=5, steps=1)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16, help="per_device_train_batch_size")
    parser.add_argument("--max-completion-length", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=64, help="size of the generated prompt set")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=0.0,
        help="0 (default) keeps both policies equal so they sample identical completions",
    )
    return harness.run_main(parser.parse_args(argv), QUICK, run)


def run(ns) -> dict:
    from posttrain.models import resolve_model_path

    load_at_start = harness.load_average()
    wall_start = time.perf_counter()

    model_path = resolve_model_path(ns.model)
    dataset = arithmetic_prompts(ns.prompts, ns.seed)
    tmp = tempfile.TemporaryDirectory(prefix="drpo-bench-")
    trainers = {
        name: build_trainer(name, ns, model_path, dataset, f"{tmp.name}/{name}") for name in OBJECTIVES
    }

    # (b) loss + backward on one shared rollout batch
    progress("rollout for the loss + backward part")
    inputs = rollout(trainers["drpo"], ns.seed)
    mask = inputs["completion_mask"]
    completion_tokens = int(mask.sum())
    padded = int(inputs["prompt_ids"].numel() + inputs["completion_ids"].numel())
    loss_times = alternate("loss + backward", ns.repeats, lambda name: loss_backward(trainers[name], inputs))
    loss_mem = {}
    progress("memory passes")
    for name in OBJECTIVES:
        with PeakMemory() as mem:
            loss_backward(trainers[name], inputs)
        loss_mem[name] = {"peak_mib": mem.peak_mib, "delta_mib": mem.delta_mib}

    # (a) full optimizer steps through trainer.train()
    blocks = alternate("full step", ns.repeats, lambda name: train_block(trainers[name]))
    rows = ns.batch_size
    full = {}
    for name in OBJECTIVES:
        times = [sum(t) / len(t) for t, _, _ in blocks[name]]  # mean step time of each block
        trl = [statistics.mean(row["step_time"] for row in logs) for _, logs, _ in blocks[name]]
        lengths = [[row["completions/mean_length"] for row in logs] for _, logs, _ in blocks[name]]
        tokens = [statistics.mean(per_step) * rows for per_step in lengths]  # completion tokens per step
        full[name] = {
            "time_s": summary(times),
            "trl_step_time_s": summary(trl),
            "step_times_raw": [t for t, _, _ in blocks[name]],
            "completion_digests": [d for _, _, d in blocks[name]],
            "completion_lengths_raw": lengths,
            "mean_completion_length": statistics.mean(x for per in lengths for x in per),
            "completion_tokens_per_s": statistics.median(tokens) / statistics.median(times),
            "s_per_1k_completion_tokens": summary([1000 * t / n for t, n in zip(times, tokens)]),
        }
    progress("memory passes")
    for name in OBJECTIVES:
        with PeakMemory() as mem:
            train_block(trainers[name])
        full[name]["peak_memory"] = {"peak_mib": mem.peak_mib, "delta_mib": mem.delta_mib}

    per_token = ratio_block(
        full["drpo"]["s_per_1k_completion_tokens"]["raw"], full["grpo"]["s_per_1k_completion_tokens"]["raw"]
    )
    full_block = {
        **{name: full[name] for name in OBJECTIVES},
        **ratio_block(full["drpo"]["time_s"]["raw"], full["grpo"]["time_s"]["raw"]),
        "per_token_ratio_median": per_token["ratio_median"],
        "per_token_ratio_min": per_token["ratio_min"],
        "per_token_ratio_max": per_token["ratio_max"],
        "trl_step_time_ratio_median": statistics.median(full["drpo"]["trl_step_time_s"]["raw"])
        / statistics.median(full["grpo"]["trl_step_time_s"]["raw"]),
        "rollouts_identical": full["drpo"]["completion_digests"] == full["grpo"]["completion_digests"],
    }
    loss_block = {
        name: {
            "time_s": summary(loss_times[name]),
            "completion_tokens_per_s": completion_tokens / statistics.median(loss_times[name]),
            "peak_memory": loss_mem[name],
        }
        for name in OBJECTIVES
    }
    loss_block.update(ratio_block(loss_times["drpo"], loss_times["grpo"]))
    loss_block.update(
        {"rows": int(mask.shape[0]), "completion_tokens": completion_tokens, "padded_tokens": padded}
    )

    mem_kind = (
        "CUDA max_memory_allocated (absolute, with model and optimizer state; + the rise during the region)"
        if torch.cuda.is_available()
        else "peak RSS of the whole process, both trainers loaded (+ the rise during the region, psutil sampled "
        "every 5 ms); the allocator may keep freed memory, so the rise is approximate"
    )
    result = {
        "benchmark": "drpo_step_time",
        "requirement": "DRPO adds at most 5% step time over GRPO at the same settings",
        "model": ns.model,
        "model_path": model_path,
        "quick": ns.quick,
        "machine": {**harness.machine_info(), "load_average_at_start": load_at_start},
        "bench_wall_s": time.perf_counter() - wall_start,
        "settings": {
            "objectives": list(OBJECTIVES),
            "num_generations": ns.num_generations,
            "per_device_train_batch_size": ns.batch_size,
            "max_completion_length": ns.max_completion_length,
            "learning_rate": ns.learning_rate,
            "repeats": ns.repeats,
            "warmup_pairs": 1,
            "steps_per_block": ns.steps,
            "prompts": ns.prompts,
            "seed": ns.seed,
            "reward": "posttrain.rewards.math.math_correctness",
            "temperature": trainers["drpo"].args.temperature,
            "grpo_loss_type": trainers["grpo"].args.loss_type,
            "bf16": trainers["drpo"].args.bf16,
        },
        "loss_backward": loss_block,
        "full_step": full_block,
        "targets": [
            harness.target(
                "DRPO vs TRL GRPOTrainer (full step)",
                f"≤ {LIMIT}×",
                "step time ratio",
                full_block,
                full_block["ratio_median"] <= LIMIT,
            )
        ],
        "within_5_percent": {
            "loss_backward": loss_block["ratio_median"] <= LIMIT,
            "full_step": full_block["ratio_median"] <= LIMIT,
        },
        "notes": [
            "ratio = median(DRPO) / median(GRPO); the spread is the min–max of the per-pair ratios.",
            "loss + backward: both objectives on the same rollout batch (generated by the DRPO trainer: "
            "whole groups per micro-batch); tokens/s counts completion tokens.",
            "full step: on_step_begin → on_step_end of trainer.train() (rollout, rewards, loss, backward, "
            "clipping, optimizer; logging excluded), mean of each block's steps. Each step reseeds with "
            "seed + step; "
            + (
                "learning rate 0 keeps both policies equal, so both sample the same completions "
                "(rollouts_identical) and no per-token normalisation is needed."
                if ns.learning_rate == 0
                else "with a non-zero learning rate the policies drift apart, so completions differ; "
                "compare the per-token ratio (seconds per completion token)."
            ),
            "TRL's step_time covers rollout + loss + backward (no optimizer step).",
            f"peak memory: {mem_kind}; measured in a separate untimed pass per objective.",
            "GRPO computes token entropies in its loss (TRL always does); DRPO does not need them.",
        ],
    }
    harness.write_outputs(result, ns.out, markdown(result))
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

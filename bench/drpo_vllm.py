"""DRPO full step with vLLM rollouts vs HF-generate rollouts, and TRL's GRPO with vLLM vs DRPO with vLLM.

    python -m bench.drpo_vllm [--model embedded:smollm2-135m-instruct] [--repeats 3] [--steps 2] [--quick]

Targets: DRPO with vLLM colocate rollouts ≤ 0.5× the step time of DRPO with HF generate (8 answers × 128
new tokens); DRPO with vLLM ≤ 1.05× TRL's GRPOTrainer with vLLM (both with posttrain's CPU weight sync,
since TRL's own fails on vLLM's CPU backend: posttrain/trainers/vllm_rollouts.py).

Arms, each built once in its own worker process (a colocated vLLM engine is process-wide state):
``drpo_vllm`` (DRPOTrainer, use_vllm colocate), ``drpo_hf`` (DRPOTrainer, HF generate) and
``grpo_trl_vllm`` (TRL's GRPOTrainer, use_vllm colocate, TRL's default loss). Same model, prompts (short
arithmetic questions), reward (math_correctness), seed, group size, batch and completion budget; one update
per rollout, so every step generates and (vLLM) syncs the weights first. The parent runs a warm-up block per
arm, then ``--repeats`` rounds of one block per arm in alternating order; a block is ``--steps`` optimizer
steps through ``trainer.train()`` (wall time per step from on_step_begin to on_step_end: weight sync,
rollout, rewards, loss, backward, optimizer). Only one worker runs at a time. Reported: median step time and
the per-round ratio spread, generated tokens/s (completion tokens / step time), and the worker's peak RSS.

The learning rate is 1e-6 (a real update, so the sync moves real weights); vLLM and HF sample different
completions, so completion lengths differ between arms: compare tokens/s alongside step time.

Writes bench/results/drpo_vllm.json and .md.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench import harness

NAME = "drpo_vllm"
ARMS = ("drpo_vllm", "drpo_hf", "grpo_trl_vllm")
PAIRS = (("drpo_vllm", "drpo_hf", 0.5), ("drpo_vllm", "grpo_trl_vllm", 1.05))
QUICK = {"num_generations": 2, "batch_size": 4, "max_completion_length": 8, "repeats": 1, "steps": 1}


def build(arm: str, ns, model_path: str, out_dir: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import GRPOConfig, GRPOTrainer

    from bench.drpo_step_time import arithmetic_prompts
    from posttrain.rewards.math import math_correctness
    from posttrain.trainers import vllm_rollouts
    from posttrain.trainers.drpo_config import DRPOConfig
    from posttrain.trainers.drpo_trainer import DRPOTrainer

    cuda = torch.cuda.is_available()
    common = dict(
        output_dir=out_dir,
        num_generations=ns.num_generations,
        per_device_train_batch_size=ns.batch_size,
        max_completion_length=ns.max_completion_length,
        temperature=0.6,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        max_steps=ns.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=ns.seed,
        use_cpu=not cuda,
        bf16=cuda,
        use_vllm=arm.endswith("vllm"),
        **{harness.checkpointing_field(): False},  # TRL's configs default to True
        vllm_mode="colocate",
        steps_per_generation=1,
    )
    if arm.startswith("drpo"):
        args = DRPOConfig(**common, updates_per_rollout=1, vllm_cpu_kv_cache_gb=ns.kv_cache_gb)
        cls = DRPOTrainer
        vllm_rollouts.prepare(args, model_path)
    else:
        args, cls = GRPOConfig(**common, loss_type="grpo"), GRPOTrainer
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(ns.kv_cache_gb)
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    set_seed(ns.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    trainer = cls(
        model=model,
        reward_funcs=[math_correctness],
        args=args,
        train_dataset=arithmetic_prompts(64, ns.seed),
        processing_class=tokenizer,
    )
    if arm == "grpo_trl_vllm" and not cuda:  # the same CPU sync as DRPO's (TRL's own fails there)
        trainer.vllm_generation.__class__ = vllm_rollouts.vllm_generation_class()

    class Logs(harness.StepTimer):
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.rows.append(dict(logs))

    harness.attach_timer(trainer, Logs())
    return trainer


def worker(arm: str, ns) -> None:
    """Build the arm, then answer each 'block' line on stdin with one JSON line on stdout."""
    import torch

    from posttrain.models import resolve_model_path

    if ns.threads:
        torch.set_num_threads(ns.threads)
    out = sys.stdout
    sys.stdout = sys.stderr  # libraries print; the protocol owns the real stdout
    tmp = tempfile.TemporaryDirectory(prefix=f"{arm}-")
    trainer = build(arm, ns, resolve_model_path(ns.model), tmp.name)
    out.write(json.dumps({"ready": arm}) + "\n")
    out.flush()
    for line in sys.stdin:
        if line.strip() != "block":
            break
        timer = trainer.step_timer
        n_times, n_rows = len(timer.times), len(timer.rows)
        with harness.PeakMemory() as mem:
            trainer.train()
        rows = timer.rows[n_rows:]
        result = {
            "times": timer.times[n_times:],
            "lengths": [r["completions/mean_length"] for r in rows],
            "trl_step_time": [r.get("step_time") for r in rows],
            "peak_mib": mem.peak_mib,
        }
        out.write(json.dumps(result) + "\n")
        out.flush()


def run(ns) -> dict:
    from posttrain.models import resolve_model_path

    load_at_start, wall_start = harness.load_average(), time.perf_counter()
    model_path = resolve_model_path(ns.model)
    flags = [
        f"--{k.replace('_', '-')}={getattr(ns, k)}"
        for k in (
            "model",
            "seed",
            "threads",
            "steps",
            "num_generations",
            "batch_size",
            "max_completion_length",
            "kv_cache_gb",
        )
    ]
    workers = {}
    for arm in ARMS:
        harness.progress(NAME, f"starting {arm}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.drpo_vllm", "--worker", arm, *flags],
            cwd=harness.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(proc.stdout.readline())["ready"] == arm, f"{arm} did not start"
        workers[arm] = proc

    def block(arm: str) -> dict:
        proc = workers[arm]
        proc.stdin.write("block\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{arm} worker exited")
        return json.loads(line)

    try:
        blocks = harness.alternate(NAME, "full step", ARMS, ns.repeats, block)
    finally:
        for proc in workers.values():
            proc.stdin.close()
            proc.wait(timeout=120)

    rows = ns.batch_size
    arms = {}
    for arm in ARMS:
        times = [statistics.mean(b["times"]) for b in blocks[arm]]
        tokens = [statistics.mean(b["lengths"]) * rows for b in blocks[arm]]
        arms[arm] = {
            "time_s": harness.summary(times),
            "generated_tokens_per_s": statistics.median(t / s for t, s in zip(tokens, times)),
            "mean_completion_length": statistics.mean(x for b in blocks[arm] for x in b["lengths"]),
            "peak_rss_mib": max(b["peak_mib"] for b in blocks[arm]),
            "blocks_raw": blocks[arm],
        }
    pairs = []
    for a, b, goal in PAIRS:
        block_ratio = harness.ratio_block(arms[a]["time_s"]["raw"], arms[b]["time_s"]["raw"])
        met = block_ratio["ratio_median"] <= goal
        pairs.append(
            harness.target(f"{a} vs {b}", f"≤ {goal}×", "full step time", block_ratio, met) | {"arms": [a, b]}
        )
    result = {
        **harness.result_header(NAME, ns, model_path, load_at_start, wall_start),
        "settings": {
            k: getattr(ns, k)
            for k in (
                "num_generations",
                "batch_size",
                "max_completion_length",
                "steps",
                "repeats",
                "kv_cache_gb",
            )
        },
        "arms": arms,
        "targets": pairs,
    }
    harness.write_outputs(result, ns.out, markdown(result))
    return result


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"# DRPO rollouts: vLLM colocate vs HF generate; TRL GRPO + vLLM ({result['model']})",
        "",
        f"{s['num_generations']} answers per prompt, {s['batch_size']} rows per step, up to "
        f"{s['max_completion_length']} new tokens, {s['steps']} steps per block, {s['repeats']} rounds "
        "after a warm-up; one update per rollout (every step syncs and generates).",
        "",
        "| arm | step time s, median (min–max) | generated tokens/s | mean completion length | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for arm, a in result["arms"].items():
        t = a["time_s"]
        lines.append(
            f"| {arm} | {t['median']:.2f} ({t['min']:.2f}–{t['max']:.2f}) | {a['generated_tokens_per_s']:.1f} | "
            f"{a['mean_completion_length']:.1f} | {a['peak_rss_mib']:.0f} |"
        )
    lines += ["", "| pair | target | ratio, median (min–max of rounds) | met |", "|---|---|---|---|"]
    for p in result["targets"]:
        r = p["ratio"]
        lines.append(
            f"| {p['pair']} | {p['target']} | {r['median']:.3f} ({r['min']:.3f}–{r['max']:.3f}) | "
            f"{'yes' if p['met'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    parser = harness.parser(__doc__, NAME, repeats=3, steps=2)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8, help="rows per step (prompts × answers)")
    parser.add_argument("--max-completion-length", type=int, default=128)
    parser.add_argument("--kv-cache-gb", type=int, default=1, help="CPU: vLLM's KV cache, GiB")
    parser.add_argument("--worker", choices=ARMS, help=argparse_hidden())
    ns = parser.parse_args(argv)
    if ns.worker:
        if ns.quick:
            for key, value in QUICK.items():
                setattr(ns, key, value)
        worker(ns.worker, ns)
        return None
    return harness.run_main(ns, QUICK, run)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()

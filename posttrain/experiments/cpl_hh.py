"""CPL study on real human preferences: CPL, CPL length-normalized, TRL DPO, TRL CPO, TRL SimPO on HH-RLHF
harmless-base.

Data: the HH-RLHF file is read at run time (default ``../shared/datasets/hh-rlhf/harmless-base-test.jsonl.gz``,
``--hh PATH`` otherwise; never copied into the repository). Records go through posttrain's HH adapter; those
that fit ``max_length``/``max_prompt_length`` untruncated (so every trainer sees the same tokens) are split by
a hash of the prompt: ``heldout_percent`` % held out, the rest is the training pool. Each seed shuffles the pool
with that seed and trains on its first ``max_steps × batch`` pairs in order (``train_sampling_strategy:
sequential``), so every arm of a seed trains on the same pairs in the same order; held-out = the first
``heldout_pairs`` held-out records by hash, the same for every run.

Arms (same model, steps, batch, learning rate, optimizer, lengths):

- ``cpl``: posttrain CPL, paper α = 0.1, λ = 0.5, summed log-probs, no BC (``posttrain train`` on a recipe).
- ``cpl_ln``: CPL with ``length_normalize: true`` and α = 2 (posttrain's recommendation for long responses).
- ``dpo``: TRL DPOTrainer, sigmoid loss, β = 0.1, frozen reference (the initial model).
- ``cpo``: TRL CPOTrainer, ``loss_type="sigmoid"``, β = 0.1, TRL's default ``cpo_alpha = 1`` (CPO's NLL term), no
  reference.
- ``simpo``: TRL CPOTrainer, ``loss_type="simpo"``, ``cpo_alpha = 0``, β = 2, γ = 0.5 (TRL's ``simpo_gamma``).
- ``base``: the untrained model (evaluation only; deterministic, so one run).

Measures on the held-out pairs (scored on posttrain's tokenization, the same tokens for every arm):

- ``common_accuracy``: the trained policy's length-normalized log-prob margin, mean log π(chosen) > mean
  log π(rejected) — one score for every arm.
- ``own_accuracy``: each method's implicit reward: CPL and CPO summed log π; CPL-LN and SimPO mean log π; DPO
  summed log π − log π_ref; base = the common score.
- ``gen_length``: mean length (tokens) of greedy answers to the first ``gen_prompts`` held-out prompts.
- ``step_time_s`` (train runtime / steps) and ``peak_rss_mib`` (the run's process, through training).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

from posttrain.experiments.runner import Metric, Study

NAME = "cpl-hh"
ARMS = ["base", "cpl", "cpl_ln", "dpo", "cpo", "simpo"]
DETERMINISTIC_ARMS = ["base"]  # evaluated once (greedy generation, exact scores): seed 1 only

HH_DEFAULT = "datasets/hh-rlhf/harmless-base-test.jsonl.gz"  # under ../shared

# Method settings per arm (the same model, data and trainer settings for all)
METHODS: dict[str, dict[str, Any]] = {
    "cpl": {"alpha": 0.1, "bias": 0.5, "length_normalize": False, "bc_weight": 0.0},
    "cpl_ln": {"alpha": 2.0, "bias": 0.5, "length_normalize": True, "bc_weight": 0.0},
    "dpo": {"beta": 0.1, "loss_type": "sigmoid"},
    "cpo": {"beta": 0.1, "loss_type": "sigmoid", "cpo_alpha": 1.0},
    "simpo": {"beta": 2.0, "loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": 0.5},
}

SCALES: dict[str, dict[str, Any]] = {
    "micro": {
        "model": "embedded:smollm2-135m-instruct",
        "dtype": "float32",
        "max_length": 96,
        "max_prompt_length": 48,
        "batch_pairs": 2,
        "max_steps": 1,
        "learning_rate": 1.0e-5,
        "heldout_percent": 20,
        "heldout_pairs": 8,
        "gen_prompts": 2,
        "gen_max_new_tokens": 8,
        "score_batch": 8,
    },
    # ≤ 90 minutes for 5 arms × 2 seeds + the base evaluation on 2 CPU cores (~7 minutes a run)
    "cpu": {
        "model": "embedded:smollm2-135m-instruct",
        "dtype": "float32",
        "max_length": 192,
        "max_prompt_length": 128,
        "batch_pairs": 4,
        "max_steps": 40,
        "learning_rate": 1.0e-5,
        "heldout_percent": 20,
        "heldout_pairs": 128,
        "gen_prompts": 16,
        "gen_max_new_tokens": 64,
        "score_batch": 8,
    },
    # one GPU; with --hh pointing at the harmless-base train file (42k pairs) for more training data
    "gpu": {
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "dtype": "bfloat16",
        "max_length": 512,
        "max_prompt_length": 384,
        "batch_pairs": 16,
        "max_steps": 300,
        "learning_rate": 1.0e-6,
        "heldout_percent": 20,
        "heldout_pairs": 400,
        "gen_prompts": 64,
        "gen_max_new_tokens": 256,
        "score_batch": 32,
    },
}


def default_hh_path() -> Path:
    from posttrain.experiments import shared_dir

    return shared_dir() / HH_DEFAULT


def study(scale: str = "cpu", *, arms: list[str] | None = None, hh: str | None = None) -> Study:
    config = {
        "scale": scale,
        "hh": str(Path(hh).resolve()) if hh else str(default_hh_path()),
        "methods": METHODS,
        **SCALES[scale],
    }
    return Study(
        name=NAME,
        arms=list(arms or ARMS),
        config=config,
        worker="posttrain.experiments.worker",
        metrics=[
            Metric("common_accuracy", "held-out accuracy, common score (%)", 100.0, 1),
            Metric("own_accuracy", "held-out accuracy, own implicit reward (%)", 100.0, 1),
            Metric("common_margin", "mean length-normalized margin", 1.0, 3),
            Metric("gen_length", "greedy answer length (tokens)", 1.0, 1),
            Metric("step_time_s", "step time (s)", 1.0, 2),
            Metric("peak_rss_mib", "peak RSS (MiB)", 1.0, 0),
        ],
        plot=plot,
        deterministic_arms=[a for a in DETERMINISTIC_ARMS if a in (arms or ARMS)],
        compare_to=["base", "cpl"],
        compare_metrics=["common_accuracy", "own_accuracy", "common_margin", "gen_length"],
        analysis=heldout_sampling_analysis,
        notes=[
            f"Model {config['model']}; HH-RLHF harmless-base from {config['hh']} (pairs fitting "
            f"{config['max_length']} tokens, prompt ≤ {config['max_prompt_length']}), "
            f"{config['heldout_percent']}% held out by prompt hash, {config['heldout_pairs']} held-out pairs scored.",
            f"Every arm: {config['max_steps']} steps × {config['batch_pairs']} pairs, lr {config['learning_rate']} "
            "constant, AdamW, no weight decay, grad-norm clip 1, the same pairs in the same order per seed.",
            "common score: mean log π(chosen) − mean log π(rejected) under the trained policy; own: each method's "
            "implicit reward (CPL, CPO: summed log π; CPL-LN, SimPO: mean log π; DPO: summed log π − log π_ref).",
            "base: the untrained model, deterministic (one run, no interval).",
            f"Methods: {json.dumps(METHODS)}",
        ],
    )


def check_inputs(st: Study) -> None:
    from posttrain.errors import UserError

    path = Path(st.config["hh"])
    if not path.is_file():
        raise UserError(
            f"{NAME}: HH-RLHF file not found: {path} (the shared copy is "
            f"../shared/{HH_DEFAULT} beside the project; give another with --hh PATH)"
        )


# --------------------------------------------------------------------------------------------- data


def prompt_hash(prompt: list[dict[str, str]]) -> int:
    return int(hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:12], 16)


def split_records(records: list[dict], heldout_percent: int) -> tuple[list[dict], list[dict]]:
    """(train pool, held-out) by a hash of the prompt: the same prompt always lands on the same side; the
    held-out side is ordered by hash (take its first N), the pool keeps file order."""
    train, heldout = [], []
    for rec in records:
        (heldout if prompt_hash(rec["prompt"]) % 100 < heldout_percent else train).append(rec)
    heldout.sort(key=lambda r: prompt_hash(r["prompt"]))
    return train, heldout


def load_split(config: dict[str, Any], tokenizer) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Adapted HH records that fit the lengths untruncated, tokenized (``prompt_ids``, ``response_ids``), split."""
    from posttrain.data.preference import adapt_preferences
    from posttrain.data.sources import read_local
    from posttrain.data.tokenize import tokenize_record

    raw = read_local(config["hh"])
    records, report = adapt_preferences(raw, "hh", config["hh"])
    kept = []
    for rec in records:
        if rec["responses"][0].strip() == rec["responses"][1].strip():
            continue
        item, _ = tokenize_record(
            rec,
            tokenizer,
            max_length=config["max_length"],
            max_prompt_length=config["max_prompt_length"],
            overlong="drop",
        )
        if item is not None:
            kept.append({**rec, **item})
    train, heldout = split_records(kept, config["heldout_percent"])
    counts = {"read": len(raw), "adapted": len(records), "fit": len(kept), "train_pool": len(train)}
    counts["heldout_pool"] = len(heldout)
    return train, heldout[: config["heldout_pairs"]], counts


def train_pairs(pool: list[dict], seed: int, n: int) -> list[dict]:
    rows = list(pool)
    random.Random(seed).shuffle(rows)
    if len(rows) < n:
        rows = (rows * (n // max(len(rows), 1) + 1))[:n]
    return rows[:n]


# --------------------------------------------------------------------------------------------- training


def _train_cpl(arm: str, seed: int, config: dict, pairs: list[dict], run_dir: Path):
    """posttrain's CPL trainer through a recipe (``posttrain train``); returns (model dir, runtime s, steps)."""
    import yaml

    from posttrain.train import run_train

    data = run_dir / "train_pairs.jsonl"  # the run's subset, in training order (deleted after the run)
    with data.open("w") as f:
        for r in pairs:
            f.write(
                json.dumps(
                    {"prompt": r["prompt"], "chosen": r["responses"][0], "rejected": r["responses"][1]}
                )
            )
            f.write("\n")
    model_dir = run_dir / "model"
    recipe = cpl_recipe(arm, seed, config, data, model_dir)
    path = run_dir / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    summary = run_train(str(path), [], progress=False)
    history = json.loads((model_dir / "log_history.json").read_text())
    runtime = next((row["train_runtime"] for row in reversed(history) if "train_runtime" in row), None)
    data.unlink()
    return model_dir, runtime, summary["steps"]


def cpl_recipe(arm: str, seed: int, config: dict, data: Path, model_dir: Path) -> dict[str, Any]:
    """The posttrain recipe a CPL arm trains (written to the run folder as ``recipe.yaml``)."""
    return {
        "method": "cpl",
        "description": f"{NAME} study: {arm}, seed {seed}, scale {config['scale']}",
        "output_dir": str(model_dir),
        "model": {"name_or_path": config["model"], "dtype": config["dtype"]},
        "data": {
            "train": {"path": str(data), "format": "pairs"},
            "max_length": config["max_length"],
            "max_prompt_length": config["max_prompt_length"],
        },
        "cpl": dict(config["methods"][arm]),
        "training": {**_common_training(config, seed), "train_sampling_strategy": "sequential"},
    }


def _common_training(config: dict, seed: int) -> dict[str, Any]:
    return {
        "per_device_train_batch_size": config["batch_pairs"],
        "gradient_accumulation_steps": 1,
        "learning_rate": config["learning_rate"],
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "max_steps": config["max_steps"],
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": seed,
        "dataloader_num_workers": 0,
    }


def _train_trl(arm: str, seed: int, config: dict, pairs: list[dict], run_dir: Path, model, tokenizer):
    """TRL's DPO or CPO trainer on the same pairs; returns (runtime s, steps)."""
    import torch
    from datasets import Dataset
    from transformers import set_seed

    from posttrain.trainers.utils import checkpointing_field

    set_seed(seed)
    cuda = torch.cuda.is_available()
    common = {
        **_common_training(config, seed),
        "output_dir": str(run_dir / "trl"),
        checkpointing_field(): False,
        "train_sampling_strategy": "sequential",
        "disable_tqdm": True,
        "use_cpu": not cuda,
        "bf16": cuda and config["dtype"] == "bfloat16",
    }
    rows = [
        {
            "prompt": r["prompt"],
            "chosen": [{"role": "assistant", "content": r["responses"][0]}],
            "rejected": [{"role": "assistant", "content": r["responses"][1]}],
        }
        for r in pairs
    ]
    method = dict(config["methods"][arm])
    if arm == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(
            **common,
            max_length=config["max_length"],
            beta=method["beta"],
            loss_type=[method["loss_type"]],
            precompute_ref_log_probs=False,
        )
        trainer = DPOTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
        )
    else:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        args = CPOConfig(**common, max_length=config["max_length"], **method)
        trainer = CPOTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
        )
    result = trainer.train()
    return result.metrics.get("train_runtime"), trainer.state.global_step


# --------------------------------------------------------------------------------------------- scoring


def sequence_logps(
    model, items: list[tuple[list[int], list[int]]], batch_size: int
) -> list[tuple[float, int]]:
    """(summed log π of the response tokens, their count) for each (prompt_ids, response_ids)."""
    import torch

    device = next(model.parameters()).device
    pad = 0
    out: list[tuple[float, int] | None] = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]) + len(items[i][1]))
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            seqs = [items[i][0] + items[i][1] for i in idx]
            width = max(map(len, seqs))
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            resp = torch.zeros_like(ids, dtype=torch.bool)
            for row, i in enumerate(idx):
                p, r = items[i]
                ids[row, : len(p) + len(r)] = torch.tensor(p + r)
                attn[row, : len(p) + len(r)] = 1
                resp[row, len(p) : len(p) + len(r)] = True
            ids, attn, resp = ids.to(device), attn.to(device), resp.to(device)
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
            target_mask = resp[:, 1:]
            picked = logits[target_mask].float().log_softmax(-1)
            lp = picked.gather(-1, ids[:, 1:][target_mask].unsqueeze(-1)).squeeze(-1)
            counts = target_mask.sum(1).tolist()
            sums = torch.zeros(len(idx), device=device).index_add_(
                0, torch.arange(len(idx), device=device).repeat_interleave(target_mask.sum(1)), lp
            )
            for row, i in enumerate(idx):
                out[i] = (float(sums[row]), int(counts[row]))
    return out  # type: ignore[return-value]


def pair_scores(model, heldout: list[dict], batch_size: int) -> list[dict[str, float]]:
    items = [(r["prompt_ids"], r["response_ids"][k]) for r in heldout for k in (0, 1)]
    lps = sequence_logps(model, items, batch_size)
    rows = []
    for i in range(len(heldout)):
        (cs, cn), (rs, rn) = lps[2 * i], lps[2 * i + 1]
        rows.append({"chosen_sum": cs, "chosen_n": cn, "rejected_sum": rs, "rejected_n": rn})
    return rows


def common_margins(scores: list[dict[str, float]]) -> list[float]:
    """The common score per pair: mean log π(chosen) − mean log π(rejected)."""
    return [
        r["chosen_sum"] / max(r["chosen_n"], 1) - r["rejected_sum"] / max(r["rejected_n"], 1) for r in scores
    ]


def accuracies(arm: str, policy: list[dict], reference: list[dict] | None) -> dict[str, float]:
    """Held-out accuracy under the common score and under the arm's own implicit reward (strict >)."""
    common = common_margins(policy)
    if arm in ("cpl", "cpo"):
        own = [p["chosen_sum"] - p["rejected_sum"] for p in policy]
    elif arm == "dpo":
        assert reference is not None
        own = [
            (p["chosen_sum"] - q["chosen_sum"]) - (p["rejected_sum"] - q["rejected_sum"])
            for p, q in zip(policy, reference)
        ]
    else:  # cpl_ln, simpo, base
        own = common
    n = len(common)
    return {
        "common_accuracy": sum(m > 0 for m in common) / n,
        "own_accuracy": sum(m > 0 for m in own) / n,
        "common_margin": sum(common) / n,
        "heldout_pairs": n,
    }


def generation_lengths(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int) -> list[int]:
    """Greedy answers to the prompts (chat template); the length counts tokens up to and including EOS."""
    import torch

    from posttrain.data.tokenize import render

    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    eos = tokenizer.eos_token_id
    lengths = []
    try:
        for start in range(0, len(prompts), 8):
            texts = [render(tokenizer, p) for p in prompts[start : start + 8]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                gen = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=eos,
                )
            for row in gen[:, enc["input_ids"].shape[1] :].tolist():
                n = len(row)
                if eos in row:
                    n = row.index(eos) + 1
                lengths.append(n)
    finally:
        tokenizer.padding_side = side
    return lengths


def pair_correct(scores: list[dict[str, float]]) -> list[float]:
    """Per held-out pair: 1 when the common score (length-normalized margin) prefers the chosen response."""
    return [float(m > 0) for m in common_margins(scores)]


def bootstrap_difference(
    a: list[float], b: list[float], draws: int = 2000, seed: int = 0
) -> tuple[float, ...]:
    """Mean of a − b over items and its 95% percentile bootstrap interval, resampling items (paired)."""
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(draws))
    return sum(diffs) / n, means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def heldout_sampling_analysis(results: list[dict]) -> list[str]:
    """The other source of noise: which held-out pairs were drawn. Per arm, each pair's common-score
    correctness averaged over the arm's seeds; the difference from base and from cpl with a paired bootstrap
    over the held-out pairs (2,000 draws)."""
    per_arm: dict[str, list[list[float]]] = {}
    for r in results:
        if r.get("pair_scores"):
            per_arm.setdefault(r["arm"], []).append(pair_correct(r["pair_scores"]))
    mean = {arm: [sum(col) / len(col) for col in zip(*rows)] for arm, rows in per_arm.items()}
    refs = [ref for ref in ("base", "cpl") if ref in mean]
    if not refs or len(mean) < 2:
        return []
    lines = [
        "Held-out sampling: common-score accuracy difference (points), each pair's correctness averaged over "
        "the arm's seeds, 95% paired bootstrap interval over the held-out pairs (2,000 draws):",
        "",
        "| arm | " + " | ".join(f"− {ref}" for ref in refs) + " |",
        "|" + "---|" * (len(refs) + 1),
    ]
    for arm in mean:
        cells = []
        for ref in refs:
            if arm == ref or len(mean[arm]) != len(mean[ref]):
                cells.append("—")
                continue
            d, lo, hi = (100 * v for v in bootstrap_difference(mean[arm], mean[ref]))
            cell = f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
            cells.append(f"**{cell}**" if lo > 0 or hi < 0 else cell)
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return [*lines, ""]


# --------------------------------------------------------------------------------------------- a run


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from posttrain.models import load_model, load_tokenizer
    from posttrain.recipe import ModelSection

    arm, seed, config = spec["arm"], spec["seed"], spec["config"]
    run_dir = Path(spec["run_dir"])
    model_cfg = ModelSection(name_or_path=config["model"], dtype=config["dtype"])
    tokenizer = load_tokenizer(model_cfg)
    pool, heldout, counts = load_split(config, tokenizer)
    n_train = config["max_steps"] * config["batch_pairs"]
    pairs = train_pairs(pool, seed, n_train)
    train: dict[str, Any] = {"data": counts, "train_pairs": len(pairs)}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference = None
    runtime = steps = None
    t0 = time.time()
    if arm == "base":
        model = load_model(model_cfg)
    elif arm in ("cpl", "cpl_ln"):
        model_dir, runtime, steps = _train_cpl(arm, seed, config, pairs, run_dir)
        peak_train = _peak_rss_mib()  # before the saved model is loaded again for the evaluation
        dtype = getattr(torch, config["dtype"])
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    else:
        model = load_model(model_cfg)
        runtime, steps = _train_trl(arm, seed, config, pairs, run_dir, model, tokenizer)
    if arm not in ("cpl", "cpl_ln"):
        peak_train = _peak_rss_mib()
    train.update({"train_runtime_s": runtime, "steps": steps, "train_wall_s": round(time.time() - t0, 1)})
    model.to(device)
    t1 = time.time()
    policy = pair_scores(model, heldout, config["score_batch"])
    if arm == "dpo":
        ref_model = load_model(model_cfg).to(device)
        reference = pair_scores(ref_model, heldout, config["score_batch"])
        del ref_model
    metrics: dict[str, Any] = accuracies(arm, policy, reference)
    lengths = generation_lengths(
        model,
        tokenizer,
        [r["prompt"] for r in heldout[: config["gen_prompts"]]],
        config["gen_max_new_tokens"],
    )
    metrics["gen_length"] = sum(lengths) / len(lengths) if lengths else None
    metrics["step_time_s"] = runtime / steps if runtime and steps else None
    metrics["peak_rss_mib"] = peak_train if arm != "base" else None
    if torch.cuda.is_available():
        metrics["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if not config.get("keep_models"):
        for weights in (run_dir / "model").glob("*.safetensors"):
            weights.unlink()
    return {
        "metrics": metrics,
        "train": train,
        "eval_s": round(time.time() - t1, 1),
        "gen_lengths": lengths,
        "pair_scores": policy,
        "peak_rss_mib_with_eval": _peak_rss_mib(),
    }


def plot(results: list[dict], summary: dict[str, Any], out: Path) -> Path:
    """Held-out preference accuracy per arm (common score and own implicit reward): runs as points, the mean
    with its 95% t interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary["arms"])
    fig, ax = plt.subplots(figsize=(1.4 * len(arms) + 2.5, 4.2))
    for offset, key, color, label in (
        (-0.15, "common_accuracy", "tab:blue", "common score (length-normalized log-prob margin)"),
        (0.15, "own_accuracy", "tab:orange", "own implicit reward"),
    ):
        for i, arm in enumerate(arms):
            vals = [
                100 * r["metrics"][key]
                for r in results
                if r["arm"] == arm and r["metrics"].get(key) is not None
            ]
            ax.scatter([i + offset] * len(vals), vals, color=color, alpha=0.35, s=16)
            st = summary["arms"][arm]["metrics"][key]
            if st["mean"] is None:
                continue
            ax.errorbar(
                i + offset,
                100 * st["mean"],
                yerr=None if st["half_width"] is None else 100 * st["half_width"],
                fmt="o",
                color=color,
                capsize=4,
                label=label if i == 0 else None,
            )
    ax.axhline(50, color="gray", lw=0.8, ls="--")
    ax.set_xticks(range(len(arms)), arms)
    ax.set_ylabel("held-out pairwise accuracy (%)")
    ax.set_title("CPL study on HH-RLHF harmless-base\n(points: runs; markers: mean ± 95% t interval)")
    ax.grid(alpha=0.3, axis="y")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    path = out / "cpl_hh_accuracy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

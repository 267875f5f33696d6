"""Padding-free (packed) batches vs padded ones for CPL and the principle RM: tokens/s and the loss.

    python -m bench.packing [--model embedded:smollm2-135m-instruct] [--repeats 4] [--threads 1] [--quick]

Padded (what the trainers do): a batch is N rows, each padded to the longest sequence of the batch.
Packed: the same N sequences concatenated into one row without padding; ``position_ids`` restart at 0 for
every sequence and no attention mask is passed, so transformers (≥ 5) detects the packed sequences and
builds a block-diagonal causal mask: each sequence attends only to itself, the math is that of the padded
batch. What changes is the work: no padding position goes through the MLPs, projections or LM head.

What packing does *not* remove here: with ``attn_implementation="sdpa"`` (flash-attention's varlen kernels
need CUDA) the block-diagonal mask is a dense (T, T) boolean mask over all T packed tokens, so attention
scores are computed for every pair of tokens in the row and then masked: attention work grows from
Σ L_max² to T². For short sequences this is small next to the MLPs; for long ones it can eat the savings.

Both variants run the same trainer code path except the forward (subclasses in this file): CPL's
``_token_logps`` and the RM's Yes/No step. The packed forward asks the model for logits only at the
positions the loss reads (``logits_to_keep``), as the padded trainers do. "Same loss" is checked on the
first batch: the loss of both variants on identical records, and the largest difference of per-token
log-probs / rewards.

Also reported (untimed): the padding of one epoch of batches in random order vs transformers'
``train_sampling_strategy="group_by_length"`` (sequences of similar length batched together), the
alternative that needs no attention change; its batches differ from the random ones, so its losses are
not comparable batch by batch (same objective over an epoch).
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from bench import cpl_vs_trl, harness, rm_vs_trl

NAME = "packing"
ARMS = ("cpl_padded", "cpl_packed", "rm_padded", "rm_packed")
QUICK = {"batch_size": 2, "sequences": 4, "steps": 1, "repeats": 1, "records": 8}


def packed_layout(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions of the real tokens in the padded batch, position_ids (1, T) restarting per sequence)."""
    keep = attention_mask.bool()
    positions = (attention_mask.cumsum(-1) - 1)[keep]
    return keep, positions.unsqueeze(0)


def _cpl_class():
    from posttrain.lm_head import project_positions
    from posttrain.trainers.cpl_trainer import CPLTrainer
    from posttrain.trainers.utils import scatter_token_logps

    class PackedCPLTrainer(CPLTrainer):
        """CPLTrainer whose forward packs the batch's sequences into one row."""

        def _token_logps(self, model, inputs):
            keep, position_ids = packed_layout(inputs["attention_mask"])
            response = inputs["response_mask"].bool()
            packed_response = response[keep]
            # the packed position j predicts token j + 1; a sequence starts with its prompt, so a response
            # token is never predicted across a sequence boundary
            predicts = torch.zeros_like(packed_response)
            predicts[:-1] = packed_response[1:]
            with project_positions(model, predicts.unsqueeze(0)):
                logits = model(
                    input_ids=inputs["input_ids"][keep].unsqueeze(0),
                    position_ids=position_ids,
                    use_cache=False,
                ).logits
            # sequences are packed in row order, so the kept rows come in the padded mask's row-major order
            mask = response[:, 1:]
            return scatter_token_logps(logits, inputs["input_ids"][:, 1:], mask), mask

    return PackedCPLTrainer


def _rm_class():
    from posttrain.losses.rlbff import yes_no_loss
    from posttrain.trainers.rlbff_trainer import RLBFFTrainer

    class PackedRLBFFTrainer(RLBFFTrainer):
        """Yes/No principle RM whose forward packs the (left-padded) batch into one row."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            keep, position_ids = packed_layout(inputs["attention_mask"])
            last = keep.sum(-1).cumsum(0) - 1  # each sequence's last token in the packed row
            logits = model(
                input_ids=inputs["input_ids"][keep].unsqueeze(0),
                position_ids=position_ids,
                logits_to_keep=last,
                use_cache=False,
            ).logits[0]
            loss, metrics = yes_no_loss(logits[:, self.yes_id], logits[:, self.no_id], inputs["fulfilled"])
            self.record_metrics("train" if model.training else "eval", metrics)
            return (loss, metrics) if return_outputs else loss

    return PackedRLBFFTrainer


def build(arm: str, ns, model_path: str, out_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    set_seed(ns.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if arm.startswith("cpl"):
        from posttrain.trainers.cpl_config import CPLConfig
        from posttrain.trainers.cpl_trainer import CPLTrainer

        tokenizer = AutoTokenizer.from_pretrained(model_path)
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        args = CPLConfig(
            **harness.training_args(ns, out_dir),
            max_length=ns.max_length,
            max_prompt_length=ns.max_length // 2,
        )
        cls = _cpl_class() if arm.endswith("packed") else CPLTrainer
        rows = cpl_vs_trl.load_pairs(cpl_vs_trl.DATA, ns.records, ns.seed)
        trainer = cls(model, args, train_dataset=rows, processing_class=tokenizer)
    else:
        from posttrain.trainers.rlbff_config import RLBFFConfig
        from posttrain.trainers.rlbff_trainer import RLBFFTrainer

        tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        args = RLBFFConfig(
            **harness.training_args(ns, out_dir, per_device_train_batch_size=ns.sequences),
            form="yes_no",
            max_length=ns.max_length,
        )
        cls = _rm_class() if arm.endswith("packed") else RLBFFTrainer
        trainer = cls(
            model, args, train_dataset=rm_vs_trl.principle_dataset(tokenizer, ns), processing_class=tokenizer
        )
    harness.attach_timer(trainer)
    return trainer


@torch.no_grad()
def same_loss(padded, packed) -> dict:
    """Loss of both variants on the first batch (same weights: both start from the checkpoint and are
    compared before any training), and the largest per-token log-prob difference for CPL."""
    batch = padded._prepare_inputs(next(iter(padded.get_train_dataloader())))
    out = {}
    for name, trainer in (("padded", padded), ("packed", packed)):
        trainer.model.eval()
        out[f"loss_{name}"] = float(trainer.compute_loss(trainer.model, batch))
        if hasattr(trainer, "_token_logps"):
            out[f"_logps_{name}"] = trainer._token_logps(trainer.model, batch)[0]
        trainer._metrics["eval"].clear()
        trainer.model.train()
    out["loss_abs_diff"] = abs(out["loss_padded"] - out["loss_packed"])
    if "_logps_padded" in out:
        out["max_token_logp_abs_diff"] = float(
            (out.pop("_logps_padded") - out.pop("_logps_packed")).abs().max()
        )
    return out


def epoch_padding(trainer, kind: str, ns) -> dict:
    """Padding of one epoch over the whole data file, batches in random order vs group_by_length
    (no model involved). transformers sorts by length within mega-batches of min(n / (4·batch), 50)
    batches, so the effect grows with the dataset."""
    import argparse

    from posttrain.trainers.cpl_trainer import CPLTrainer

    if kind == "cpl":
        rows = cpl_vs_trl.load_pairs(cpl_vs_trl.DATA, 10**9, ns.seed)
        dataset = CPLTrainer._prepare_dataset(rows, trainer.processing_class, trainer.args)  # has "length"
    else:
        dataset = rm_vs_trl.principle_dataset(
            trainer.processing_class, argparse.Namespace(**{**vars(ns), "records": 10**9})
        )
    saved = trainer.train_dataset, trainer.args.train_sampling_strategy, trainer.args.length_column_name
    out = {"records": len(dataset)}
    try:
        trainer.train_dataset, trainer.args.length_column_name = dataset, "length"
        for strategy in ("random", "group_by_length"):
            trainer.args.train_sampling_strategy = strategy
            tokens = padded = 0
            for batch in trainer.get_train_dataloader():
                tokens += int(batch["attention_mask"].sum())
                padded += batch["attention_mask"].numel()
            out[strategy] = {
                "tokens": tokens,
                "padded_positions": padded,
                "padding_fraction": 1 - tokens / padded,
            }
    finally:
        trainer.train_dataset, trainer.args.train_sampling_strategy, trainer.args.length_column_name = saved
    return out


def run(ns) -> dict:
    from posttrain.models import resolve_model_path

    load_start, wall = harness.load_average(), time.perf_counter()
    model_path = resolve_model_path(ns.model)
    tmp = tempfile.TemporaryDirectory(prefix="packing-bench-")
    trainers = {arm: build(arm, ns, model_path, f"{tmp.name}/{arm}") for arm in ARMS}
    checks = {
        kind: same_loss(trainers[f"{kind}_padded"], trainers[f"{kind}_packed"]) for kind in ("cpl", "rm")
    }
    data = {arm: harness.batch_stats(trainers[arm], ns.steps) for arm in ARMS}
    blocks = harness.alternate(NAME, "step", ARMS, ns.repeats, lambda arm: harness.train_block(trainers[arm]))

    arms = {arm: harness.arm_stats(blocks[arm], data[arm]) for arm in ARMS}
    for arm in ARMS:  # the packed forward reads no padding: its positions are the tokens
        packed = arm.endswith("packed")
        arms[arm]["positions_per_step"] = arms[arm][
            "tokens_per_step" if packed else "padded_positions_per_step"
        ]
    kinds = {}
    for kind in ("cpl", "rm"):
        block = harness.ratio_block(
            arms[f"{kind}_packed"]["tokens_per_s_raw"], arms[f"{kind}_padded"]["tokens_per_s_raw"]
        )
        kinds[kind] = {
            "packed_vs_padded_tokens_per_s": block,
            "same_loss": checks[kind],
            "epoch_padding": epoch_padding(trainers[f"{kind}_padded"], kind, ns),
        }

    result = {
        **harness.result_header(NAME, ns, model_path, load_start, wall),
        "settings": {
            "arms": list(ARMS),
            "cpl_pairs_per_step": ns.batch_size,
            "rm_records_per_step": ns.sequences,
            "steps_per_block": ns.steps,
            "repeats": ns.repeats,
            "warmup_rounds": 1,
            "records": ns.records,
            "max_length": ns.max_length,
            "learning_rate": ns.learning_rate,
            "seed": ns.seed,
            "attn_implementation": trainers["cpl_padded"].model.config._attn_implementation,
        },
        "arms": arms,
        "kinds": kinds,
        "targets": [
            harness.target(
                f"{label}: packed vs padded batches",
                "same loss (Δ < 1e-4); speed reported",
                "packed/padded tokens/s",
                kinds[kind]["packed_vs_padded_tokens_per_s"],
                kinds[kind]["same_loss"]["loss_abs_diff"] < 1e-4,
            )
            for kind, label in (("cpl", "CPL"), ("rm", "Principle RM (Yes/No)"))
        ],
        "notes": [
            "ratio = median(packed tokens/s) / median(padded tokens/s); spread = min–max of per-round ratios.",
            "tokens = non-padding tokens per step (identical in both variants: same records, same batches).",
            "packed attention: sdpa with a dense block-diagonal (T, T) mask built by transformers from "
            "position_ids; no varlen kernel on CPU, so attention still scores every token pair of the row.",
            "epoch padding: padded positions of one epoch over the whole data file, random batches vs "
            "group_by_length (untimed; grouped batches differ from random ones, so losses are not comparable "
            "batch by batch; step time follows padded positions, the matrix products dominate).",
            "'met' for these rows = the packed loss equals the padded loss within 1e-4 on the first batch.",
        ],
    }
    harness.write_outputs(result, ns.out, markdown(result))
    tmp.cleanup()
    return result


def markdown(result: dict) -> str:
    s, arms = result["settings"], result["arms"]
    lines = [
        "# Packed (padding-free) vs padded batches",
        "",
        f"Model `{result['model']}` on {result['machine']['device']} ({result['machine']['torch_threads']} "
        f"torch threads, attention `{s['attn_implementation']}`), CPL {s['cpl_pairs_per_step']} pairs/step, "
        f"principle RM {s['rm_records_per_step']} records/step, {s['steps_per_block']} step(s) per block, "
        f"{s['repeats']} alternating rounds after a warm-up round.",
        "",
        "| trainer | batches | step median (s) | tokens/step | positions/step | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        a = arms[arm]
        kind, layout = arm.split("_")
        lines.append(
            f"| {'CPL' if kind == 'cpl' else 'principle RM'} | {layout} | {a['time_s']['median']:.3f} "
            f"| {a['tokens_per_step']:.0f} | {a['positions_per_step']:.0f} | {a['tokens_per_s']:.0f} |"
        )
    lines += [
        "",
        "| trainer | packed/padded tokens/s (min–max) | loss padded | loss packed | abs Δloss "
        "| epoch padding (whole file) random → group_by_length |",
        "|---|---|---|---|---|---|",
    ]
    for kind, label in (("cpl", "CPL"), ("rm", "principle RM")):
        k = result["kinds"][kind]
        sl, ep = k["same_loss"], k["epoch_padding"]
        lines.append(
            f"| {label} | {harness.fmt_ratio(k['packed_vs_padded_tokens_per_s'])} | {sl['loss_padded']:.6f} "
            f"| {sl['loss_packed']:.6f} | {sl['loss_abs_diff']:.1e} | "
            f"{100 * ep['random']['padding_fraction']:.1f}% → {100 * ep['group_by_length']['padding_fraction']:.1f}% "
            f"({ep['records']} records) |"
        )
    lines += ["", *[f"- {note}" for note in result["notes"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = harness.parser(__doc__, NAME, repeats=4, steps=2)
    harness.add_training_options(p)
    return harness.run_main(p.parse_args(argv), QUICK, run)


if __name__ == "__main__":
    main(sys.argv[1:])

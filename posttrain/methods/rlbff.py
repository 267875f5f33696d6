"""RLBFF (NVIDIA, arXiv 2509.21319): trains a principle reward model — does response y to context x satisfy
principle P? — as a Yes/No-token RM (the paper's) or a scalar head; the Bradley–Terry baseline is TRL's
RewardTrainer on preference pairs. Config :class:`~posttrain.trainers.rlbff_config.RLBFFConfig` (recipe
section ``rlbff:``), trainers in :mod:`posttrain.trainers.rlbff_trainer`, losses :mod:`posttrain.losses.rlbff`.
Data: principle records (format ``principles``: context/response/principle/fulfilment; ``helpsteer3``
too), or preference pairs for Bradley–Terry. May evaluate with ``evaluate.principles`` and
``evaluate.rm_bench``. The trained model is read back by :class:`posttrain.rewards.principle.PrincipleRewardModel`
(``posttrain score``, or a DRPO reward ``principle_rm=PATH``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from posttrain import models
from posttrain.data.preference import adapt_preferences
from posttrain.data.principle import adapt_principles, tokenize_principles
from posttrain.data.sources import read_source
from posttrain.errors import UserError
from posttrain.methods.base import Method, lm_derived

if TYPE_CHECKING:  # annotations only: the recipe layer sits above the methods
    from posttrain.recipe import Recipe
    from posttrain.trainers.rlbff_config import RLBFFConfig


def _config() -> type:
    from posttrain.trainers.rlbff_config import RLBFFConfig  # lazy: see Method.load_config

    return RLBFFConfig


def setup_from_recipe(recipe: Recipe, args: RLBFFConfig, *, progress: bool = True):
    """Data first (cheap errors), then the model, then the trainer for the recipe's RM form."""
    from datasets import Dataset

    from posttrain.trainers.rlbff_trainer import (  # lazy: see Method.build
        BradleyTerryTrainer,
        RLBFFTrainer,
        reward_config_from,
    )

    tokenizer = models.load_tokenizer(recipe.model, padding_side="left")
    reports, splits = [], {}
    for name in ("train", "eval"):
        source = getattr(recipe.data, name)
        if source is None:
            continue
        raw, label = read_source(source)
        if args.form == "bradley_terry":
            splits[name], report = _bt_split(raw, label, source.format)
        else:
            records, report = adapt_principles(
                raw, label, partially_as=args.partially_as, keep_helpfulness=args.keep_helpfulness
            )
            splits[name] = Dataset.from_list(
                tokenize_principles(
                    records, tokenizer, max_length=args.max_length, template=args.template, report=report
                )
            )
        if len(splits[name]) == 0:
            raise UserError(f"{report.summary()}: no usable records left")
        reports.append(report)

    kind = "causal_lm" if args.form == "yes_no" else "sequence_classification"
    model = models.load_model(recipe.model, kind=kind)
    if args.form == "bradley_terry":
        trainer = BradleyTerryTrainer(
            model,
            args=reward_config_from(args),
            train_dataset=splits["train"],
            eval_dataset=splits.get("eval"),
            processing_class=tokenizer,
            peft_config=models.peft_config(recipe.model, task_type="SEQ_CLS"),
        )
    else:
        trainer = RLBFFTrainer(
            model,
            args,
            train_dataset=splits["train"],
            eval_dataset=splits.get("eval"),
            processing_class=tokenizer,
            peft_config=models.peft_config(
                recipe.model, task_type="CAUSAL_LM" if kind == "causal_lm" else "SEQ_CLS"
            ),
        )
    return trainer, reports


def _bt_split(raw, label, fmt):
    """Preference pairs in TRL's conversational prompt/chosen/rejected form for RewardTrainer."""
    from datasets import Dataset  # lazy: see Method.build

    records, report = adapt_preferences(raw, fmt if fmt != "principles" else "pairs", label)
    rows = []
    for rec in records:
        best = max(range(len(rec["scores"])), key=rec["scores"].__getitem__)
        worst = min(range(len(rec["scores"])), key=rec["scores"].__getitem__)
        rows.append(
            {
                "prompt": rec["prompt"],
                "chosen": [{"role": "assistant", "content": rec["responses"][best]}],
                "rejected": [{"role": "assistant", "content": rec["responses"][worst]}],
            }
        )
    return Dataset.from_list(rows), report


METHOD = Method(
    name="rlbff",
    summary="RLBFF principle reward model (NVIDIA 2025): Yes/No-token or scalar head; Bradley–Terry baseline",
    load_config=_config,
    build=setup_from_recipe,
    derived=lm_derived,
    evaluations=("principles", "rm_bench"),
)

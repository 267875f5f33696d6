"""CPL (Contrastive Preference Learning, Hejna et al., ICLR 2024): preference pairs or rankings, no reward or
reference model. Config :class:`~posttrain.trainers.cpl_config.CPLConfig` (recipe section ``cpl:``), trainer
:class:`~posttrain.trainers.cpl_trainer.CPLTrainer`, loss :mod:`posttrain.losses.cpl`. Data: the preference
formats (``pairs``, ``hh``, ``ranked``, ``helpsteer3``); lengths from ``data:``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posttrain import models
from posttrain.data.preference import load_preference_split
from posttrain.methods.base import Method, lm_derived

if TYPE_CHECKING:  # annotations only: the recipe layer sits above the methods
    from posttrain.recipe import Recipe
    from posttrain.trainers.cpl_config import CPLConfig


def _config() -> type:
    from posttrain.trainers.cpl_config import CPLConfig  # lazy: see Method.load_config

    return CPLConfig


def setup_from_recipe(recipe: Recipe, args: CPLConfig, *, progress: bool = True):
    """Build a CPLTrainer from a validated recipe: data first (cheap errors), then the model."""
    from datasets import Dataset

    from posttrain.trainers.cpl_trainer import CPLTrainer  # lazy: see Method.build

    tokenizer = models.load_tokenizer(recipe.model)
    reports = []
    splits: dict[str, Any] = {}
    for name in ("train", "eval"):
        source = getattr(recipe.data, name)
        if source is None:
            continue
        records, report = load_preference_split(
            source,
            tokenizer,
            max_length=args.max_length,
            max_prompt_length=args.max_prompt_length,
            overlong=recipe.data.overlong,
            progress=progress,
        )
        reports.append(report)
        splits[name] = Dataset.from_list(records)
    model = models.load_model(recipe.model)
    trainer = CPLTrainer(
        model,
        args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("eval"),
        processing_class=tokenizer,
        peft_config=models.peft_config(recipe.model),
    )
    return trainer, reports


METHOD = Method(
    name="cpl",
    summary="Contrastive Preference Learning (Hejna et al., ICLR 2024): preferences, no reward/reference model",
    load_config=_config,
    build=setup_from_recipe,
    derived=lm_derived,
)

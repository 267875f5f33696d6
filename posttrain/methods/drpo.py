"""DRPO (Li et al. 2025): reasoning RL with a decoupled length reward; DisCO, GRPO and GRPO-LP baselines.
Config :class:`~posttrain.trainers.drpo_config.DRPOConfig` (recipe section ``drpo:``), trainer
:class:`~posttrain.trainers.drpo_trainer.DRPOTrainer`, loss :mod:`posttrain.losses.drpo`. Data: ``math`` /
``gsm8k`` problems (the prompt suffix asks for a boxed answer), or ``prompts`` for a learned reward such as
a principle RM; rewards from :mod:`posttrain.rewards.registry`. May evaluate with ``evaluate.math``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from posttrain import models
from posttrain.data.math import load_math_split
from posttrain.data.prompts import load_prompt_split
from posttrain.data.report import DropReport
from posttrain.methods.base import Method, policy_derived
from posttrain.rewards.math import DRPO_SUFFIX
from posttrain.rewards.registry import check_reward_specs, resolve_reward

if TYPE_CHECKING:  # annotations only: the recipe layer sits above the methods
    from posttrain.recipe import Recipe
    from posttrain.trainers.drpo_config import DRPOConfig


def _config() -> type:
    from posttrain.trainers.drpo_config import DRPOConfig  # lazy: see Method.load_config (trl)

    return DRPOConfig


def setup_from_recipe(recipe: Recipe, args: DRPOConfig, *, progress: bool = True):
    """Build a DRPOTrainer from a validated recipe: data and rewards first (cheap errors), then the model."""
    from posttrain.trainers import vllm_rollouts  # lazy: see Method.build
    from posttrain.trainers.drpo_trainer import DRPOTrainer

    suffix = DRPO_SUFFIX if args.prompt_suffix is None else args.prompt_suffix
    splits, reports = {}, []
    for name in ("train", "eval"):
        source = getattr(recipe.data, name)
        if source is not None:
            reports.append(DropReport(source=name))
            if source.format == "prompts":  # a learned reward (e.g. a principle RM): no math suffix
                splits[name] = load_prompt_split(source, report=reports[-1])
            else:
                splits[name] = load_math_split(source, suffix=suffix, report=reports[-1])
    reward_funcs = [resolve_reward(spec, allow_custom=args.allow_custom_rewards) for spec in args.rewards]
    if args.use_vllm:  # before the model loads: a run vLLM cannot do stops here, nothing written
        vllm_rollouts.prepare(
            args, models.resolve_model_path(recipe.model.name_or_path, recipe.model.gguf_file)
        )
    tokenizer = models.load_tokenizer(recipe.model, padding_side="left")
    model = models.load_model(recipe.model)
    trainer = DRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("eval"),
        processing_class=tokenizer,
        peft_config=models.peft_config(recipe.model),
    )
    return trainer, reports


def check_files(recipe: Recipe, where: str) -> None:
    """A principle RM another recipe trains must exist before this one runs."""
    check_reward_specs(recipe.method_args.get("rewards") or [], where)


METHOD = Method(
    name="drpo",
    summary="DRPO (Li et al. 2025): decoupled length reward for reasoning RL; DisCO, GRPO, GRPO-LP baselines",
    load_config=_config,
    build=setup_from_recipe,
    derived=policy_derived,
    evaluations=("math",),
    check_files=check_files,
)

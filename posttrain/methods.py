"""The method registry: what a recipe's ``method:`` key can name.

Each method brings a config class (a ``TrainingArguments`` subclass, as TRL's ``DPOConfig``), a data
loader that turns the recipe's data section into the datasets its trainer expects, and a trainer
factory. Imports are lazy so that ``posttrain validate`` stays quick and light.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from posttrain.errors import UserError
from posttrain.trainers.utils import checkpointing_field

if TYPE_CHECKING:
    from posttrain.recipe import Recipe


class ConfigFieldError(ValueError):
    """Raised by a method config's ``__post_init__`` for a bad value; names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    config_path: str
    setup_path: str
    # Recipe values that live outside the method/training sections but land in the config.
    derived: Callable[[Recipe], dict[str, Any]] = lambda recipe: {}

    @property
    def config_cls(self) -> type:
        return _load(self.config_path)

    @functools.cached_property
    def _base_fields(self) -> set[str]:
        from transformers import TrainingArguments

        from posttrain.trainers.guards import GuardArguments

        shared = (*dataclasses.fields(TrainingArguments), *dataclasses.fields(GuardArguments))
        return {f.name for f in shared if f.init}

    def method_fields(self) -> set[str]:
        """Fields the method adds to TrainingArguments (its recipe section), minus recipe-derived ones."""
        own = {f.name for f in dataclasses.fields(self.config_cls) if f.init} - self._base_fields
        return own - set(_DERIVED_KEYS)

    def training_fields(self) -> set[str]:
        return self._base_fields - {"output_dir"} - set(_DERIVED_KEYS)

    def validate_section(self, values: dict[str, Any], where: str) -> dict[str, Any]:
        from posttrain.recipe import validate_dataclass_section

        return validate_dataclass_section(
            self.config_cls, values, names=self.method_fields(), section=self.name, where=where
        )

    def build_config(self, recipe: Recipe, *, hardware_neutral: bool = False):
        """The trainer config for a validated recipe; bad values become :class:`UserError`.

        ``hardware_neutral`` drops the settings TrainingArguments checks against this machine's devices
        (bf16/fp16/tf32), so a GPU recipe validates on a laptop.
        """
        kwargs = {**recipe.training, **recipe.method_args, **self.derived(recipe)}
        if hardware_neutral:
            for key in ("bf16", "fp16", "tf32", "bf16_full_eval", "fp16_full_eval"):
                kwargs.pop(key, None)
        try:
            return self.config_cls(output_dir=recipe.output_dir, **kwargs)
        except ConfigFieldError as exc:
            section = self.name if exc.field in recipe.method_args else "training"
            raise UserError(f"{recipe.source}: {section}.{exc.field}: {exc.message}") from None
        except (ValueError, TypeError) as exc:
            raise UserError(f"{recipe.source}: training: {exc}") from None

    def setup(self) -> Callable:
        return _load(self.setup_path)


# Keys a recipe sets in its model/data sections that map onto trainer config fields.
_DERIVED_KEYS = ("activation_checkpointing", "gradient_checkpointing", "max_length", "max_prompt_length")


def _lm_derived(recipe: Recipe) -> dict[str, Any]:
    return {
        checkpointing_field(): recipe.model.gradient_checkpointing,
        "max_length": recipe.data.max_length,
        "max_prompt_length": recipe.data.max_prompt_length,
    }


def _policy_derived(recipe: Recipe) -> dict[str, Any]:
    # RL trainers take lengths from their own section (max_completion_length); prompts are not truncated.
    return {checkpointing_field(): recipe.model.gradient_checkpointing}


METHODS: dict[str, Method] = {
    "cpl": Method(
        name="cpl",
        summary="Contrastive Preference Learning (Hejna et al., ICLR 2024): preferences, no reward/reference model",
        config_path="posttrain.trainers.cpl_config:CPLConfig",
        setup_path="posttrain.trainers.cpl_trainer:setup_from_recipe",
        derived=_lm_derived,
    ),
    "rlbff": Method(
        name="rlbff",
        summary="RLBFF principle reward model (NVIDIA 2025): Yes/No-token or scalar head; Bradley–Terry baseline",
        config_path="posttrain.trainers.principle_rm_config:PrincipleRMConfig",
        setup_path="posttrain.trainers.principle_rm_trainer:setup_from_recipe",
        derived=_lm_derived,
    ),
    "drpo": Method(
        name="drpo",
        summary="DRPO (Li et al. 2025): decoupled length reward for reasoning RL; DisCO, GRPO, GRPO-LP baselines",
        config_path="posttrain.trainers.drpo_config:DRPOConfig",
        setup_path="posttrain.trainers.drpo_trainer:setup_from_recipe",
        derived=_policy_derived,
    ),
}


def method_names() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> Method:
    return METHODS[name]

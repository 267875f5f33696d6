"""What every method brings, and the recipe wiring the methods share.

A :class:`Method` is one post-training method as a recipe names it (``method: cpl``): its config class (a
``TrainingArguments`` subclass, as TRL's ``DPOConfig``; in a recipe its own fields go under the section named
after the method), the recipe values that land in that config from other sections, the evaluations a recipe
of the method may ask for, its own checks before any model loads, and the function that turns a validated
recipe into a trainer and its data reports. Each method's module (:mod:`posttrain.methods.cpl`, ...) builds
one; :mod:`posttrain.methods` holds the registry.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError
from transformers import TrainingArguments

from posttrain.errors import ConfigFieldError, UserError, did_you_mean
from posttrain.trainers.guards import GuardArguments
from posttrain.trainers.utils import checkpointing_field

if TYPE_CHECKING:  # annotations only: the recipe layer sits above the methods
    from posttrain.recipe import Recipe

# Builds the trainer for a validated recipe: (recipe, config, progress=...) -> (trainer, data reports).
Setup = Callable[..., tuple[Any, list]]


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    # The config class, returned by a loader: the config modules import transformers and (DRPO) trl, which
    # a recipe of another method need not pay for.
    load_config: Callable[[], type]
    # Builds the trainer; each method's module imports its trainer inside it (trl, peft and datasets load
    # only when a run starts, not when `posttrain validate` checks a recipe).
    build: Setup
    # Recipe values that live outside the method/training sections but land in the config.
    derived: Callable[[Recipe], dict[str, Any]] = lambda recipe: {}
    # The `evaluate:` keys a recipe of this method may set (evaluations of what the method trains).
    evaluations: tuple[str, ...] = ()
    # Checks of the method's own section that need the file system (before any model loads).
    check_files: Callable[[Recipe, str], None] = lambda recipe, where: None

    @property
    def config_cls(self) -> type:
        return self.load_config()

    @functools.cached_property
    def _base_fields(self) -> set[str]:
        shared = (*dataclasses.fields(TrainingArguments), *dataclasses.fields(GuardArguments))
        return {f.name for f in shared if f.init}

    def method_fields(self) -> set[str]:
        """Fields the method adds to TrainingArguments (its recipe section), minus recipe-derived ones."""
        own = {f.name for f in dataclasses.fields(self.config_cls) if f.init} - self._base_fields
        return own - set(DERIVED_KEYS)

    def training_fields(self) -> set[str]:
        return self._base_fields - {"output_dir"} - set(DERIVED_KEYS)

    def validate_section(self, values: dict[str, Any], where: str) -> dict[str, Any]:
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

    def setup(self) -> Setup:
        return self.build


# Keys a recipe sets in its model/data sections that map onto trainer config fields.
DERIVED_KEYS = ("activation_checkpointing", "gradient_checkpointing", "max_length", "max_prompt_length")


def lm_derived(recipe: Recipe) -> dict[str, Any]:
    """Methods that train on fixed records: lengths from ``data:``, checkpointing from ``model:``."""
    return {
        checkpointing_field(): recipe.model.gradient_checkpointing,
        "max_length": recipe.data.max_length,
        "max_prompt_length": recipe.data.max_prompt_length,
    }


def policy_derived(recipe: Recipe) -> dict[str, Any]:
    """RL methods take lengths from their own section (max_completion_length); prompts are not truncated."""
    return {checkpointing_field(): recipe.model.gradient_checkpointing}


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def validate_dataclass_section(
    cls: type, values: dict[str, Any], *, names: set[str], section: str, where: str
) -> dict[str, Any]:
    """Check ``values`` against the dataclass fields ``names`` of ``cls``: known keys, coercible types."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: '{section}' must be a mapping, got {type(values).__name__}")
    hints = _type_hints(cls)
    out = {}
    for key, value in values.items():
        if key not in names:
            raise UserError(f"{where}: unknown key '{section}.{key}'{did_you_mean(key, names)}")
        try:
            out[key] = TypeAdapter(hints[key]).validate_python(value)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise UserError(f"{where}: {section}.{key}: {msg} (got {value!r})") from None
    return out

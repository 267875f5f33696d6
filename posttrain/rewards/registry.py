"""Reward functions a recipe can name (``drpo.rewards``), all with TRL's ``reward_funcs`` signature.

An entry is a registered name, ``module:function`` (any TRL-signature callable on the import path; only with
``drpo.allow_custom_rewards: true``, since importing a module runs its code), or
``principle_rm=PATH`` (an RLBFF principle RM read from PATH; the principle comes from the dataset's
``principle`` column).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from posttrain.errors import UserError, did_you_mean
from posttrain.paths import find_file, recipes_dir
from posttrain.yaml_file import read_yaml


def _math_correctness() -> Callable:
    from posttrain.rewards.math import math_correctness

    return math_correctness


def _math_correctness_lenient() -> Callable:
    from posttrain.rewards.math import math_correctness_lenient

    return math_correctness_lenient


# name → factory (lazy: a recipe that does not use a reward does not import its dependencies)
REWARDS: dict[str, Callable[[], Callable]] = {
    "math_correctness": _math_correctness,  # strict: a final \boxed{} answer (the official DRPO reward)
    "math_correctness_lenient": _math_correctness_lenient,  # opt-in: else the last expression anywhere
}


CUSTOM_REWARD_OPT_IN = "drpo.allow_custom_rewards"


def is_custom_reward(spec: str) -> bool:
    """``module:function``: importing it runs code that the recipe names."""
    return ":" in spec and not spec.startswith("principle_rm=")


def check_custom_rewards(specs, *, allowed: bool) -> None:
    """Refuse ``module:function`` rewards unless the recipe opts in (:data:`CUSTOM_REWARD_OPT_IN`): importing a
    module runs its code, so a recipe from elsewhere must say so visibly before it can."""
    custom = [spec for spec in specs if is_custom_reward(spec)]
    if custom and not allowed:
        raise UserError(
            f"drpo.rewards: '{custom[0]}' imports and runs the module '{custom[0].partition(':')[0]}'; "
            f"set {CUSTOM_REWARD_OPT_IN}: true to allow rewards from your own modules"
        )


def resolve_reward(spec: str, *, allow_custom: bool = False) -> Callable:
    """One reward spec → a callable; a bad spec is a :class:`UserError` naming it. ``module:function`` is
    imported only with ``allow_custom`` (the recipe's ``drpo.allow_custom_rewards``)."""
    if spec.startswith("principle_rm="):
        # lazy: loading a principle RM needs torch; `posttrain validate` resolves no reward
        from posttrain.rewards.principle import PrincipleReward, PrincipleRewardModel

        path = spec.split("=", 1)[1]
        return PrincipleReward(PrincipleRewardModel.from_pretrained(path, field=f"drpo.rewards '{spec}'"))
    if is_custom_reward(spec):
        check_custom_rewards([spec], allowed=allow_custom)
        module, _, attr = spec.partition(":")
        try:
            func = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UserError(f"reward '{spec}': cannot import ({exc})") from None
        if not callable(func):
            raise UserError(f"reward '{spec}' is not callable")
        return func
    if spec not in REWARDS:
        raise UserError(
            f"unknown reward '{spec}'{did_you_mean(spec, REWARDS)}; "
            f"known: {', '.join(sorted(REWARDS))}, or 'module:function', or 'principle_rm=PATH'"
        )
    return REWARDS[spec]()


def _recipe_that_writes(path: str) -> str | None:
    """The bundled recipe whose output_dir is ``path`` (e.g. the RM another recipe's reward reads)."""
    target = Path(path).as_posix().rstrip("/")
    for recipe in sorted(recipes_dir().rglob("*.yaml")):
        try:
            output_dir = read_yaml(recipe).get("output_dir")
        except UserError:
            continue
        if isinstance(output_dir, str) and Path(output_dir).as_posix().rstrip("/") == target:
            return recipe.relative_to(recipes_dir()).with_suffix("").as_posix()
    return None


def check_reward_specs(specs: list[str], where: str) -> None:
    """Before any model loads: a ``principle_rm=PATH`` whose PATH is not on disk is named, with the command
    that trains it when a bundled recipe writes it (``outputs/...`` is a local folder, not a hub id: loading
    it would otherwise go to the hub and fail there)."""
    for spec in specs or []:
        if not isinstance(spec, str) or not spec.startswith("principle_rm="):
            continue
        path = spec.split("=", 1)[1]
        if find_file(path) is not None:
            continue
        maker = _recipe_that_writes(path)
        if maker is not None:
            raise UserError(
                f"{where}: drpo.rewards: the reward model {path} does not exist yet; train it first: "
                f"posttrain train {maker}"
            )
        looks_local = path.startswith(("/", ".", "~")) or path.count("/") != 1 or path.startswith("outputs/")
        if looks_local:
            raise UserError(f"{where}: drpo.rewards: reward model not found: {path}")

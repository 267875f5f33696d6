"""Reward functions a recipe can name (``drpo.rewards``), all with TRL's ``reward_funcs`` signature.

An entry is a registered name, ``module:function`` (any TRL-signature callable on the import path), or
``principle_rm=PATH`` (an RLBFF principle RM read from PATH; the principle comes from the dataset's
``principle`` column).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from posttrain.errors import UserError, did_you_mean


def _math_correctness() -> Callable:
    from posttrain.rewards.math import math_correctness

    return math_correctness


# name → factory (lazy: a recipe that does not use a reward does not import its dependencies)
REWARDS: dict[str, Callable[[], Callable]] = {
    "math_correctness": _math_correctness,
}


def resolve_reward(spec: str) -> Callable:
    """One reward spec → a callable; a bad spec is a :class:`UserError` naming it."""
    if spec.startswith("principle_rm="):
        from posttrain.rewards.principle import PrincipleReward, PrincipleRewardModel

        return PrincipleReward(PrincipleRewardModel.from_pretrained(spec.split("=", 1)[1]))
    if ":" in spec:
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

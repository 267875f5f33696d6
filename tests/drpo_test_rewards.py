"""Reward functions for DRPO tests: cheap, deterministic, and mixed within a group on a random tiny model.

Importable as ``drpo_test_rewards:parity`` when tests/ is on the path (the distributed test sets PYTHONPATH);
a recipe that names it sets ``drpo.allow_custom_rewards: true`` (module:function rewards are opt-in).
"""

from posttrain.rewards import completion_text


def parity(prompts, completions, **kwargs) -> list[float]:
    """1 when the completion text has an odd number of characters."""
    return [float(len(completion_text(c)) % 2) for c in completions]

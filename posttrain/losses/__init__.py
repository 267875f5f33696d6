"""Pure loss functions: tensors in, loss (and metrics) out. Trainers only call them.

``LOSSES`` names every public loss so recipes, docs and tests can find a method's math in one place.
"""

from posttrain.losses.cpl import cpl_loss, cpl_ranked_loss, segment_logps, sequence_nll
from posttrain.losses.drpo import (
    drpo_loss,
    drpo_objective,
    kl_hinge_penalty,
    length_penalized_rewards,
    length_reward,
    local_totals,
    positive_weights,
    token_mean_kl,
)

LOSSES = {
    "cpl": cpl_loss,
    "cpl_ranked": cpl_ranked_loss,
    "drpo": drpo_objective,
    "drpo_kl_penalty": kl_hinge_penalty,
    "drpo_loss": drpo_loss,
}

__all__ = [
    "LOSSES",
    "cpl_loss",
    "cpl_ranked_loss",
    "drpo_loss",
    "drpo_objective",
    "kl_hinge_penalty",
    "length_penalized_rewards",
    "length_reward",
    "local_totals",
    "positive_weights",
    "segment_logps",
    "sequence_nll",
    "token_mean_kl",
]

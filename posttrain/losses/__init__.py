"""Pure loss functions: tensors in, tensors out. Trainers only call them; they import nothing of posttrain.

One module per method (:mod:`~posttrain.losses.cpl`, :mod:`~posttrain.losses.drpo`,
:mod:`~posttrain.losses.rlbff`). Every function returns tensors only, in one of two shapes:

- a **term** of the paper's math returns one unreduced tensor, a value per pair, group or record
  (``cpl_loss`` per pair, ``drpo_objective`` per group, ``kl_hinge_penalty``, ``grpo_lp_advantages``, ...);
- a **training loss** — what a trainer's ``compute_loss`` minimises — returns ``(loss, metrics)``: a 0-dim
  tensor and a dict of detached tensors to log (:data:`TRAINING_LOSSES`).

``LOSSES`` names every loss, objective, penalty and advantage of every method, so recipes, docs and tests
find a method's math in one place (tests/test_loss_registry.py checks that it is complete).
"""

from posttrain.losses.cpl import cpl_loss, cpl_ranked_loss, segment_logps, sequence_nll
from posttrain.losses.drpo import (
    drpo_loss,
    drpo_objective,
    grpo_lp_advantages,
    kl_hinge_penalty,
    length_penalized_rewards,
    length_reward,
    local_totals,
    positive_weights,
    sequence_scores,
    token_mean_kl,
)
from posttrain.losses.rlbff import scalar_fulfilment_loss, yes_no_loss

LOSSES = {
    "cpl": cpl_loss,
    "cpl_ranked": cpl_ranked_loss,
    "drpo": drpo_objective,
    "drpo_kl_penalty": kl_hinge_penalty,
    "drpo_loss": drpo_loss,
    "grpo_lp_rewards": length_penalized_rewards,
    "grpo_lp_advantages": grpo_lp_advantages,
    "rlbff_yes_no": yes_no_loss,
    "rlbff_scalar_head": scalar_fulfilment_loss,
}

# the entries that return (loss, metrics); every other entry returns one unreduced tensor
TRAINING_LOSSES = frozenset({"cpl_ranked", "drpo_loss", "rlbff_yes_no", "rlbff_scalar_head"})

__all__ = [
    "LOSSES",
    "TRAINING_LOSSES",
    "cpl_loss",
    "cpl_ranked_loss",
    "drpo_loss",
    "drpo_objective",
    "grpo_lp_advantages",
    "kl_hinge_penalty",
    "length_penalized_rewards",
    "length_reward",
    "local_totals",
    "positive_weights",
    "scalar_fulfilment_loss",
    "segment_logps",
    "sequence_nll",
    "sequence_scores",
    "token_mean_kl",
    "yes_no_loss",
]

"""RLBFF losses: training a principle reward model (arXiv 2509.21319).

Both RM forms answer "does the response satisfy principle P?" with a scalar reward r whose sign is the
answer:

- Yes/No-token RM (the paper's ``Llama-3.3-Nemotron-70B-Reward-Principle``): r = logit(Yes) − logit(No) at
  the first assistant token. Training is cross-entropy over the two-way {Yes, No} softmax at that
  position::

      L = −log softmax([ℓ_Yes, ℓ_No])[label]   (label 0 = Yes, 1 = No)

  which equals binary cross-entropy on r: −log σ(r) for Yes, −log σ(−r) for No.
- Scalar-head RM: r is a sequence-classification head's output; binary cross-entropy on fulfilment.

The Bradley–Terry baseline uses TRL's ``RewardTrainer`` (−log σ(r⁺ − r⁻)) and needs no function here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _metrics(reward: torch.Tensor, fulfilled: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        reward = reward.detach().float()
        yes = fulfilled.bool()
        return {
            "accuracy": ((reward > 0) == yes).float(),
            "reward/yes": reward[yes],
            "reward/no": reward[~yes],
            "p_yes": torch.sigmoid(reward),
        }


def yes_no_loss(
    yes_logits: torch.Tensor, no_logits: torch.Tensor, fulfilled: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean two-way cross-entropy over {Yes, No}; ``fulfilled`` (B,) is 1 for Yes and 0 for No."""
    two_way = torch.stack([yes_logits.float(), no_logits.float()], dim=-1)  # (B, 2)
    target = (1 - fulfilled.long()).clamp(0, 1)  # index 0 = Yes
    loss = F.cross_entropy(two_way, target)
    return loss, _metrics(yes_logits.float() - no_logits.float(), fulfilled)


def scalar_fulfilment_loss(
    rewards: torch.Tensor, fulfilled: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean binary cross-entropy of σ(r) against fulfilment (1 = Yes, 0 = No)."""
    loss = F.binary_cross_entropy_with_logits(rewards.float(), fulfilled.float())
    return loss, _metrics(rewards, fulfilled)

"""Decoupled Reward Policy Optimization (DRPO) objective and its trust-region penalty.

Paper: G. Li, Y. Chen, M. Lin, T. Yang, "DRPO: Efficient Reasoning via Decoupled Reward Policy
Optimization", arXiv 2510.04474 (2025). Built on DisCO (Li et al., arXiv 2505.12366).

For one prompt with a group of K sampled answers o_1..o_K, correctness c_i ∈ {0, 1} and lengths |o_i|:

- score          s(o) = (1/|o|) Σ_t log π_θ(o_t | q, o_<t)        (logits divided by the sampling temperature;
                 computed by the trainer and passed in as ``scores``)
- length reward  r_l(o) = 1 − |o|/C (``linear``), 1 − (|o|/C)² (``concave``) or 0.5 + 0.5·cos(π|o|/C)
                 (``cosine``), C = the maximum completion length
- weights        ω_i = softmax_{i: c_i=1}( r_l(o_i) / λ )  — the closed-form optimum of the KL-regularised
                 positive distribution; λ → ∞ gives uniform weights, i.e. DisCO
- objective      J = Σ_{i: c_i=1} ω_i s(o_i) − τ · log( (1/|N|) Σ_{j: c_j=0} exp(s(o_j)/τ) )
- trust region   KL(π_old‖π_θ) ≈ token mean of (log π_old − log π_θ) over the micro-batch of *all*
                 processes; penalty (β/2)·[KL − δ]_+², applied once to that micro-batch
- loss           −mean over the micro-batch's groups (all processes) of J + penalty (:func:`drpo_loss`)

Correct answers are never pushed down: their weights are positive and sum to one, so length only decides
*how much* each correct answer is pushed up. A length penalty folded into the reward (GRPO-LP) instead gives
long correct answers negative advantages — the problem DRPO fixes.

What the paper leaves open, and what is offered here:
- A group with no correct or no incorrect answer contributes J = 0 (no discriminative signal). In
  particular an all-correct group gets no length pressure, although it is exactly where the policy could
  learn to be shorter for free. ``all_correct="reweight"`` (opt-in, default off) gives such groups
  J = Σ_i (ω_i − 1/K) s(o_i): the gradient moves probability mass from the uniform empirical distribution of
  the correct answers toward the length-preferring optimum ω. The coefficients sum to zero, so the group's
  answers are not pushed up or down on average, only shifted toward the shorter ones.

Deviations from the official code (Optimization-AI/DRPO, ``compute_policy_loss_drpo`` on verl) and why:
- The logged loss is the true value of −J + penalty. The official code rescales with ``S / S.detach()``
  and writes the hinge as ``max(β(KL − δ), 0).detach() · KL``, so the gradients are the same but the
  logged numbers are not; here the tensors themselves carry the loss.
- The official code ``all_gather``s the micro-batch (with gradients) and every GPU computes the whole loss;
  here each process keeps its rows, only the sums and counts are all-reduced, and :func:`drpo_loss` scales
  the local terms so that the data-parallel *average* of the gradients is the whole loss's gradient (same
  value and gradient, see its docstring; tested against one process in tests/test_distributed.py).
- Each process holds whole groups (``per_device_train_batch_size`` a multiple of K); the official
  micro-batch (``ppo_max_token_len_per_gpu`` / max length = 4 answers per GPU) splits a group over GPUs
  and regroups after the gather. The loss of a gathered micro-batch is the same; which groups share a
  micro-batch differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LengthReward = Callable[[torch.Tensor], torch.Tensor]

# r_l as a function of the relative length x = |o| / C ∈ [0, 1]; all equal 1 at x = 0 and decrease in x.
LENGTH_REWARDS: dict[str, LengthReward] = {
    "linear": lambda x: 1.0 - x,
    "concave": lambda x: 1.0 - x.pow(2),
    "cosine": lambda x: 0.5 + 0.5 * torch.cos(math.pi * x),
}


def length_reward(
    lengths: torch.Tensor, *, max_length: int, shape: str = "linear", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """r_l(o) for completion lengths in tokens, in ``dtype``; lengths beyond C count as C."""
    x = (lengths.to(dtype) / float(max_length)).clamp(0.0, 1.0)
    return LENGTH_REWARDS[shape](x)


def positive_weights(
    correct: torch.Tensor,
    lengths: torch.Tensor,
    *,
    max_length: int,
    lam: float,
    shape: str = "linear",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """ω: softmax of r_l/λ over each group's correct answers, 0 on incorrect ones; (G, K) → (G, K).

    Rows without a correct answer are all zero. ``lam = inf`` gives uniform weights (DisCO).
    """
    correct = correct.bool()
    if math.isinf(lam):
        logits = torch.zeros(correct.shape, dtype=dtype, device=correct.device)
    else:
        logits = length_reward(lengths, max_length=max_length, shape=shape, dtype=dtype) / lam
    logits = logits.masked_fill(~correct, float("-inf"))
    # softmax of an all -inf row is NaN; such rows have no positive answers and get weight 0
    weights = torch.softmax(logits, dim=-1)
    return torch.where(correct, weights, torch.zeros_like(weights))


def drpo_objective(
    scores: torch.Tensor,
    correct: torch.Tensor,
    lengths: torch.Tensor,
    *,
    max_length: int,
    lam: float,
    tau: float,
    shape: str = "linear",
    all_correct: str = "zero",
) -> torch.Tensor:
    """Per-group DRPO objective J (to maximise); scores, correct, lengths shaped (G, K) → (G,).

    ``lam = float("inf")`` is DisCO (uniform weights on correct answers). ``all_correct``: "zero" (the
    paper) or "reweight" (opt-in length pressure for all-correct groups, see the module docstring).
    Computed in the scores' precision, never below float32 (float64 stays float64; bf16 becomes float32).
    """
    if all_correct not in ("zero", "reweight"):
        raise ValueError(f"all_correct must be 'zero' or 'reweight', got {all_correct!r}")
    dtype = torch.promote_types(scores.dtype, torch.float32)
    scores = scores.to(dtype)
    correct = correct.bool()
    n_pos = correct.sum(-1)
    n_neg = (~correct).sum(-1)
    weights = positive_weights(correct, lengths, max_length=max_length, lam=lam, shape=shape, dtype=dtype)
    positive = (weights * scores).sum(-1)

    # τ · log mean_{j incorrect} exp(s_j / τ); rows without an incorrect answer use finite filler so that
    # neither the value nor the gradient of the unselected branch is NaN.
    neg_logits = torch.where(~correct, scores / tau, torch.full_like(scores, float("-inf")))
    neg_logits = torch.where((n_neg > 0).unsqueeze(-1), neg_logits, torch.zeros_like(scores))
    negative = tau * (torch.logsumexp(neg_logits, dim=-1) - torch.log(n_neg.clamp(min=1).to(dtype)))

    valid = (n_pos > 0) & (n_neg > 0)
    objective = torch.where(valid, positive - negative, torch.zeros_like(positive))
    if all_correct == "reweight":
        k = correct.shape[-1]
        shift = ((weights - 1.0 / k) * scores).sum(-1)
        objective = torch.where(n_neg == 0, shift, objective)
    return objective


def kl_hinge_penalty(kl: torch.Tensor, *, beta: float, delta: float) -> torch.Tensor:
    """(β/2)·[KL − δ]_+² — zero inside the trust region KL ≤ δ, quadratic outside."""
    return 0.5 * beta * torch.clamp(kl - delta, min=0.0).pow(2)


def token_mean_kl(old_logps: torch.Tensor, new_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(π_old‖π_θ) estimated as the mean over all masked tokens of log π_old − log π_θ; (B, T) → ()."""
    mask = mask.to(new_logps.dtype)
    return ((old_logps - new_logps) * mask).sum() / mask.sum().clamp(min=1.0)


def local_totals(objective: torch.Tensor, kl_sum: torch.Tensor, kl_tokens: torch.Tensor) -> torch.Tensor:
    """One process's share of a micro-batch, detached: [Σ J over its groups, its number of groups,
    Σ over its masked tokens of log π_old − log π_θ, its number of masked tokens]. Summed over processes
    (an all-reduce) this gives the ``totals`` :func:`drpo_loss` needs."""
    dtype = torch.promote_types(objective.dtype, torch.float32)
    values = [objective.detach().sum(), objective.new_tensor(objective.numel()), kl_sum.detach(), kl_tokens]
    return torch.stack([torch.as_tensor(v, device=objective.device).to(dtype) for v in values])


def drpo_loss(
    objective: torch.Tensor,
    kl_sum: torch.Tensor,
    totals: torch.Tensor,
    *,
    beta: float,
    delta: float,
    world_size: int = 1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One process's DRPO loss when a micro-batch is split over ``world_size`` data-parallel processes.

    The loss of the whole (gathered) micro-batch, as the official code computes it (``all_gather`` across
    GPUs, then one hinge):

        L = −(1/G) Σ_{all groups} J + (β/2)·[KL − δ]_+²,   KL = (Σ_{all tokens} log π_old − log π_θ) / N

    with G groups and N masked tokens over all processes. ``objective``: this process's J per group (G_p,);
    ``kl_sum``: Σ over its masked tokens of log π_old − log π_θ (both differentiable); ``totals``: the
    sum over processes of :func:`local_totals` (detached). Data-parallel engines (DDP, ZeRO, FSDP) *average*
    the processes' gradients, so each process returns

        ℓ_p = W·(−Σ_{its groups} J / G + β[KL − δ]_+ · kl_sum_p / N) + c

    whose gradient averaged over the W processes is ∇L (the hinge's slope β[KL − δ]_+ = dL/dKL is a
    constant of the whole micro-batch), and c = (β/2)[KL − δ]_+² − β[KL − δ]_+·KL (detached) makes the mean
    of the ℓ_p over processes equal L itself (what the Trainer logs). With one process ℓ = L.
    Returns ℓ_p and the micro-batch's ``objective`` (mean J), ``kl`` and ``kl_penalty``.
    """
    n_groups = totals[1].clamp(min=1.0)
    n_tokens = totals[3].clamp(min=1.0)
    mean_objective = totals[0] / n_groups
    kl = totals[2] / n_tokens
    penalty = kl_hinge_penalty(kl, beta=beta, delta=delta)
    slope = beta * torch.clamp(kl - delta, min=0.0)
    local = -objective.sum() / n_groups + slope * kl_sum / n_tokens
    loss = world_size * local + (penalty - slope * kl)
    return loss, {"objective": mean_objective, "kl": kl, "kl_penalty": penalty}


def length_penalized_rewards(correct: torch.Tensor, lengths: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """Baseline GRPO-LP rewards (Arora & Zanette 2025, "Training Language Models to Reason Efficiently").

    r_i = c_i · (1 − α · σ((|o_i| − mean) / std)), mean/std over the group's correct answers (std 0 → 1).
    The group-normalised advantages GRPO computes from these give long correct answers negative values when
    most of the group is correct — the coupling DRPO removes. (G, K) → (G, K).
    """
    correct = correct.float()
    lengths = lengths.float()
    n_pos = correct.sum(-1, keepdim=True).clamp(min=1.0)
    mean = (lengths * correct).sum(-1, keepdim=True) / n_pos
    var = ((lengths - mean).pow(2) * correct).sum(-1, keepdim=True) / n_pos
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    return correct * (1.0 - alpha * torch.sigmoid((lengths - mean) / std))


def grpo_lp_advantages(correct: torch.Tensor, lengths: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """The GRPO-LP baseline's advantages: :func:`length_penalized_rewards` normalised within each group,
    (r − mean) / (std + 1e-4) (GRPO's normalisation; a group of one answer has std 0). (G, K) → (G, K)."""
    shaped = length_penalized_rewards(correct, lengths, alpha=alpha)
    k = shaped.shape[-1]
    std = shaped.std(dim=-1, keepdim=True) if k > 1 else torch.zeros_like(shaped[..., :1])
    return (shaped - shaped.mean(dim=-1, keepdim=True)) / (std + 1e-4)


def sequence_scores(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DRPO's score s(o) = (1/|o|) Σ_t log π_θ(o_t | q, o_<t): the mean log-prob of each answer's tokens,
    (N, T) → (N,) (an answer with no tokens scores 0)."""
    maskf = mask.to(token_logps.dtype)
    return (token_logps * maskf).sum(dim=1) / maskf.sum(dim=1).clamp(min=1.0)

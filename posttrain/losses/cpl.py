"""Contrastive Preference Learning loss.

Paper: J. Hejna, R. Rafailov, H. Sikchi, C. Finn, S. Niekum, W. B. Knox, D. Sadigh, "Contrastive
Preference Learning: Learning from Human Feedback without RL", ICLR 2024, arXiv 2310.13639.

For LLMs the state is prompt + response prefix and the action the next token, so the segment score of a
response y to prompt x is (paper Eq. 5, with the optimal advantage A* = α log π*)::

    S(y|x) = α · Σ_t γ^t log π(y_t | x, y_<t)

and the biased contrastive loss for a preferred/dispreferred pair (paper Eq. 6, conservative λ)::

    L = −log σ(S⁺ − λ·S⁻) = softplus(λ·S⁻ − S⁺)

Deviations from the paper and why:
- Optional per-token averaging of log-probs (``average=True``): sums scale with response length, and with
  λ < 1 a long pair lands in softplus's linear part where every pair gets the same gradient whatever its
  margin. Averaging keeps scores O(α). Default off, as in the paper.
- Ranked lists: the paper trains on pairs; for K scored responses every strictly ordered pair contributes
  the same biased loss, averaged within the record, then over records (so a 4-response record weighs
  as much as a pair and gradient accumulation stays exact). The official dense mode
  (jhejna/cpl ``biased_bce_with_scores``) instead sorts every segment of the batch by score and pairs all
  of them across the batch, ties included (their order then follows the sort), averaging over all pairs.
  Its segments come from one task, so their scores compare across the batch; here responses to different
  prompts are never compared, and tied responses form no pair. Not offered: it would compare answers to
  unrelated prompts and make a record's weight depend on its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cpl_loss(
    chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, *, alpha: float, bias: float
) -> torch.Tensor:
    """Per-pair CPL loss ``softplus(α·(λ·r − c))`` where ``c``, ``r`` are (discounted) log-prob sums (B,)."""
    return F.softplus(alpha * (bias * rejected_logps.float() - chosen_logps.float()))


def segment_logps(
    token_logps: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, average: bool = False
) -> torch.Tensor:
    """Σ_t γ^t log π over the masked (response) tokens of each row; t counts from the first response token.

    With ``average`` the discounted sum is divided by Σ_t γ^t (the plain mean when γ = 1).
    token_logps, mask: (N, L) → (N,).
    """
    mask = mask.to(token_logps.dtype)
    weights = mask
    if gamma != 1.0:
        t = (torch.cumsum(mask, dim=-1) - 1).clamp(min=0)
        weights = mask * torch.pow(torch.as_tensor(gamma, dtype=token_logps.dtype), t)
    total = (token_logps * weights).sum(-1)
    if average:
        total = total / weights.sum(-1).clamp(min=1e-8)
    return total


def sequence_nll(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean negative log-likelihood over masked tokens, (N, L) → (N,)."""
    mask = mask.to(token_logps.dtype)
    return -(token_logps * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def cpl_ranked_loss(
    seq_logps: torch.Tensor,
    better: torch.Tensor,
    worse: torch.Tensor,
    pair_record: torch.Tensor,
    num_records: int,
    *,
    alpha: float,
    bias: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CPL over ordered pairs of a batch of ranked records.

    seq_logps (N,): (discounted) log-prob sum of every response in the batch.
    better, worse (P,): indices into seq_logps of each ordered pair (better ranked first).
    pair_record (P,): the record each pair comes from, in [0, num_records).
    Returns the mean over records of the mean pair loss within each record, and metrics (unreduced
    per-pair tensors; the trainer gathers and averages them).
    """
    chosen, rejected = seq_logps[better], seq_logps[worse]
    per_pair = cpl_loss(chosen, rejected, alpha=alpha, bias=bias)
    pairs_per_record = torch.zeros(num_records, device=per_pair.device).index_add_(
        0, pair_record, torch.ones_like(per_pair)
    )
    weights = 1.0 / pairs_per_record[pair_record]
    has_pairs = (pairs_per_record > 0).sum().clamp(min=1)
    loss = (per_pair * weights).sum() / has_pairs
    with torch.no_grad():
        s_chosen, s_rejected = alpha * chosen.float(), alpha * rejected.float()
        metrics = {
            "accuracy": (s_chosen > s_rejected).float(),
            "margin": s_chosen - s_rejected,
            "logps/chosen": chosen.float(),
            "logps/rejected": rejected.float(),
        }
    return loss, metrics

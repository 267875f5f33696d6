"""DRPO objective, weights and trust-region penalty against arithmetic written out here."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.losses import LOSSES, drpo_objective, kl_hinge_penalty, length_penalized_rewards
from posttrain.losses.drpo import drpo_loss, length_reward, local_totals, positive_weights, token_mean_kl

# one group of K=4: two correct answers (lengths 10 and 30), two incorrect; C = 100
SCORES = [-1.0, -2.0, -0.5, -3.0]
CORRECT = [1, 1, 0, 0]
LENGTHS = [10, 30, 20, 40]


def _t(rows, dtype=torch.float32):
    return torch.tensor(rows, dtype=dtype)


def _negative_term(tau):
    # τ · log( mean over incorrect of exp(s/τ) ), incorrect scores −0.5 and −3.0
    return tau * math.log((math.exp(-0.5 / tau) + math.exp(-3.0 / tau)) / 2)


def test_registry_names_the_drpo_functions():
    assert LOSSES["drpo"] is drpo_objective
    assert LOSSES["drpo_kl_penalty"] is kl_hinge_penalty


def test_length_reward_shapes():
    lengths = _t([0, 25, 50, 100, 150])
    assert length_reward(lengths, max_length=100).tolist() == pytest.approx([1, 0.75, 0.5, 0, 0])
    assert length_reward(lengths, max_length=100, shape="concave").tolist() == pytest.approx(
        [1, 1 - 0.0625, 0.75, 0, 0]
    )
    cosine = [0.5 + 0.5 * math.cos(math.pi * x) for x in (0, 0.25, 0.5, 1, 1)]
    assert length_reward(lengths, max_length=100, shape="cosine").tolist() == pytest.approx(cosine)


def test_weights_are_a_softmax_of_length_reward_over_correct_answers():
    w = positive_weights(_t([CORRECT]), _t([LENGTHS]), max_length=100, lam=0.1)
    # r_l = 0.9 and 0.7 → logits 9 and 7 → weights e^9/(e^9+e^7), e^7/(e^9+e^7)
    w_short = 1 / (1 + math.exp(-2))
    assert w[0].tolist() == pytest.approx([w_short, 1 - w_short, 0.0, 0.0], abs=1e-6)


def test_drpo_objective_equals_hand_arithmetic():
    got = drpo_objective(_t([SCORES]), _t([CORRECT]), _t([LENGTHS]), max_length=100, lam=0.1, tau=10.0)
    w_short = 1 / (1 + math.exp(-2))
    positive = w_short * -1.0 + (1 - w_short) * -2.0
    assert got.shape == (1,)
    assert got.item() == pytest.approx(positive - _negative_term(10.0), abs=1e-5)


def test_lambda_to_infinity_is_disco():
    args = (_t([SCORES]), _t([CORRECT]), _t([LENGTHS]))
    disco = drpo_objective(*args, max_length=100, lam=math.inf, tau=10.0)
    # uniform weights over the two correct answers: mean(−1, −2) = −1.5
    assert disco.item() == pytest.approx(-1.5 - _negative_term(10.0), abs=1e-5)
    large = drpo_objective(*args, max_length=100, lam=1e6, tau=10.0)
    assert large.item() == pytest.approx(disco.item(), abs=1e-5)


def test_groups_without_both_kinds_contribute_zero_and_no_nan_gradient():
    scores = _t([[-1.0, -2.0, -0.5], [-1.0, -2.0, -0.5], [-1.0, -2.0, -0.5]]).requires_grad_()
    correct = _t([[1, 1, 1], [0, 0, 0], [1, 0, 0]])
    lengths = _t([[5, 10, 20]] * 3)
    j = drpo_objective(scores, correct, lengths, max_length=50, lam=0.1, tau=10.0)
    assert j[0].item() == 0.0 and j[1].item() == 0.0
    # the mixed group: one correct answer (weight 1) against two incorrect ones
    expected = -1.0 - 10.0 * math.log((math.exp(-0.2) + math.exp(-0.05)) / 2)
    assert j[2].item() == pytest.approx(expected, abs=1e-5)
    j.sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert scores.grad[:2].abs().sum().item() == 0.0


def test_correct_answers_are_always_pushed_up_even_the_long_one():
    scores = _t([SCORES]).requires_grad_()
    drpo_objective(scores, _t([CORRECT]), _t([LENGTHS]), max_length=100, lam=0.1, tau=10.0).sum().backward()
    grad = scores.grad[0]
    w_short = 1 / (1 + math.exp(-2))
    # dJ/ds_i = ω_i for correct answers: positive, the shorter one larger
    assert grad[:2].tolist() == pytest.approx([w_short, 1 - w_short], abs=1e-6)
    # dJ/ds_j = −softmax(s/τ)_j over the incorrect answers: negative, summing to −1
    soft = [math.exp(-0.05), math.exp(-0.3)]
    assert grad[2:].tolist() == pytest.approx([-soft[0] / sum(soft), -soft[1] / sum(soft)], abs=1e-6)


def test_all_correct_reweight_opt_in_shifts_mass_to_short_answers():
    scores = _t([[-1.0, -2.0]]).requires_grad_()
    correct, lengths = _t([[1, 1]]), _t([[10, 30]])
    assert drpo_objective(scores, correct, lengths, max_length=100, lam=0.1, tau=10.0).item() == 0.0
    j = drpo_objective(scores, correct, lengths, max_length=100, lam=0.1, tau=10.0, all_correct="reweight")
    w_short = 1 / (1 + math.exp(-2))
    # Σ (ω_i − 1/K) s_i with K = 2
    expected = (w_short - 0.5) * -1.0 + (1 - w_short - 0.5) * -2.0
    assert j.item() == pytest.approx(expected, abs=1e-6)
    j.sum().backward()
    assert scores.grad[0, 0] > 0 > scores.grad[0, 1]
    assert scores.grad.sum().item() == pytest.approx(0.0, abs=1e-6)


def test_kl_hinge_penalty():
    assert kl_hinge_penalty(torch.tensor(5e-5), beta=1e3, delta=1e-4).item() == 0.0
    # (β/2)·(KL − δ)² = 500 · 0.0099²
    assert kl_hinge_penalty(torch.tensor(0.01), beta=1e3, delta=1e-4).item() == pytest.approx(0.049005)


def test_token_mean_kl_counts_only_masked_tokens():
    old = _t([[-1.0, -2.0, -9.0], [-0.5, -9.0, -9.0]])
    new = _t([[-1.5, -2.5, 0.0], [-1.0, 0.0, 0.0]])
    mask = _t([[1, 1, 0], [1, 0, 0]])
    # (0.5 + 0.5 + 0.5) / 3 tokens
    assert token_mean_kl(old, new, mask).item() == pytest.approx(0.5)


def test_length_penalized_rewards_baseline():
    correct, lengths = _t([[1, 1, 1, 0]]), _t([[10, 20, 30, 5]])
    got = length_penalized_rewards(correct, lengths, alpha=0.5)[0].tolist()
    std = math.sqrt((100 + 0 + 100) / 3)

    def sig(x):
        return 1 / (1 + math.exp(-x))

    expected = [1 - 0.5 * sig(-10 / std), 1 - 0.5 * sig(0), 1 - 0.5 * sig(10 / std), 0.0]
    assert got == pytest.approx(expected, abs=1e-6)


def test_drpo_objective_keeps_float64_at_large_tau():
    """float64 scores are computed in float64 (exact to rounding even at τ = 1e6, where float32 is off by
    ~0.2); lower precisions are computed in float32."""
    scores = [-1.2345678901234, -2.2, -0.5000001, -3.1]
    tau, lam = 1e6, 0.1
    got = drpo_objective(
        _t([scores], torch.float64), _t([CORRECT]), _t([LENGTHS]), max_length=100, lam=lam, tau=tau
    )
    assert got.dtype == torch.float64
    # the same in plain float64 arithmetic: ω ∝ exp(r_l/λ), r_l = 1 − |o|/C over the correct answers
    e = [math.exp((1 - n / 100) / lam) for n in LENGTHS[:2]]
    positive = (e[0] * scores[0] + e[1] * scores[1]) / (e[0] + e[1])
    negative = tau * math.log((math.exp(scores[2] / tau) + math.exp(scores[3] / tau)) / 2)
    assert abs(got.item() - (positive - negative)) < 1e-8
    single = drpo_objective(_t([scores]), _t([CORRECT]), _t([LENGTHS]), max_length=100, lam=lam, tau=tau)
    assert single.dtype == torch.float32
    half = _t([scores], torch.bfloat16)
    assert drpo_objective(half, _t([CORRECT]), _t([LENGTHS]), max_length=100, lam=lam, tau=tau).dtype == (
        torch.float32
    )


# A micro-batch of 4 groups of K = 3 answers over 5 token positions, split over 2 processes (2 groups each);
# the processes hold different numbers of tokens, so the global token mean differs from the mean of the two.
_MASK = [[1] * 5] * 3 + [[1, 1, 0, 0, 0]] * 3 + [[1, 1, 1, 1, 0]] * 3 + [[1, 0, 0, 0, 0]] * 3
_CORRECT4 = [[1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 1]]


def _micro_batch():
    gen = torch.Generator().manual_seed(3)
    new = (-torch.rand(12, 5, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    old = (new.detach() + 0.05 * torch.randn(12, 5, generator=gen, dtype=torch.float64)).detach()
    mask = _t(_MASK, torch.float64)
    return new, old, mask, _t(_CORRECT4), mask.sum(1).view(4, 3)


def _objective(new, mask, correct, lengths):
    scores = (new * mask).sum(1) / mask.sum(1)
    return drpo_objective(scores.view(-1, 3), correct, lengths, max_length=5, lam=0.1, tau=10.0)


def test_drpo_loss_of_two_processes_equals_one_process_on_the_same_micro_batch():
    """The trust region and the objective's mean span the whole micro-batch (the official code all-gathers
    it): two processes, each with half the groups, reduce their token sums and counts before the hinge; the
    mean of their losses is the one-process loss and their averaged gradients (what DDP applies) are its
    gradient."""
    beta, delta = 1e3, 1e-4
    new, old, mask, correct, lengths = _micro_batch()
    # one process: L = −mean_groups J + (β/2)[KL − δ]_+², KL the token mean over the whole micro-batch
    kl = token_mean_kl(old, new, mask)
    reference = -_objective(new, mask, correct, lengths).mean() + kl_hinge_penalty(kl, beta=beta, delta=delta)
    assert kl.item() > delta  # the hinge acts
    (ref_grad,) = torch.autograd.grad(reference, new)

    parts = []
    for rows, groups in ((slice(0, 6), slice(0, 2)), (slice(6, 12), slice(2, 4))):
        objective = _objective(new[rows], mask[rows], correct[groups], lengths[groups])
        kl_sum = ((old[rows] - new[rows]) * mask[rows]).sum()
        parts.append((objective, kl_sum, local_totals(objective, kl_sum, mask[rows].sum())))
    totals = parts[0][2] + parts[1][2]  # the all-reduce
    losses, grads = [], []
    for objective, kl_sum, _ in parts:
        loss, stats = drpo_loss(objective, kl_sum, totals, beta=beta, delta=delta, world_size=2)
        losses.append(loss)
        grads.append(torch.autograd.grad(loss, new, retain_graph=True)[0])
        assert stats["kl"].item() == pytest.approx(kl.item(), rel=1e-12)
    assert ((losses[0] + losses[1]) / 2).item() == pytest.approx(reference.item(), rel=1e-12)
    assert torch.allclose((grads[0] + grads[1]) / 2, ref_grad, rtol=1e-10, atol=1e-12)

    # the per-process hinge it replaces gives another loss on this micro-batch
    per_process = [
        -objective.mean() + kl_hinge_penalty(kl_sum / totals_p[3], beta=beta, delta=delta)
        for objective, kl_sum, totals_p in parts
    ]
    assert abs((per_process[0] + per_process[1]).item() / 2 - reference.item()) > 1e-3

    # one process: drpo_loss is L itself, value and gradient
    objective = _objective(new, mask, correct, lengths)
    kl_sum = ((old - new) * mask).sum()
    one, _ = drpo_loss(objective, kl_sum, local_totals(objective, kl_sum, mask.sum()), beta=beta, delta=delta)
    assert one.item() == pytest.approx(reference.item(), rel=1e-12)
    assert torch.allclose(torch.autograd.grad(one, new)[0], ref_grad, rtol=1e-10, atol=1e-12)

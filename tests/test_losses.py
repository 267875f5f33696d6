"""CPL loss against hand arithmetic (values worked out in the comments, not by calling the code)."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.losses import LOSSES, cpl_loss, cpl_ranked_loss, segment_logps, sequence_nll
from posttrain.trainers.utils import gather_token_logps


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_cpl_loss_matches_hand_arithmetic():
    # pair 1: c = -10, r = -20, α = 0.1, λ = 0.5 → α(λr − c) = 0.1·(−10 + 10) = 0 → softplus(0) = ln 2
    # pair 2: c = -30, r = -10 → 0.1·(−5 + 30) = 2.5 → ln(1 + e^2.5) = 2.578889...
    # pair 3: c = -4,  r = -40 → 0.1·(−20 + 4) = −1.6 → ln(1 + 0.2018965) = 0.1839007
    chosen = torch.tensor([-10.0, -30.0, -4.0])
    rejected = torch.tensor([-20.0, -10.0, -40.0])
    loss = cpl_loss(chosen, rejected, alpha=0.1, bias=0.5)
    assert loss.shape == (3,)
    assert loss[0].item() == pytest.approx(math.log(2.0), abs=1e-6)
    assert loss[1].item() == pytest.approx(2.5788897, abs=1e-6)
    assert loss[2].item() == pytest.approx(0.1839007, abs=1e-6)


def test_cpl_loss_bias_one_is_symmetric_logistic():
    # λ = 1, α = 1: softplus(r − c); c − r = 2 → ln(1 + e^−2) = 0.126928
    loss = cpl_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), alpha=1.0, bias=1.0)
    assert loss.item() == pytest.approx(0.1269280, abs=1e-6)


def test_cpl_loss_gradients_are_conservative():
    # d/dc softplus(α(λr − c)) = −α·σ(z), d/dr = αλ·σ(z); z = 0 here so σ = 0.5
    c = torch.tensor([-10.0], requires_grad=True)
    r = torch.tensor([-20.0], requires_grad=True)
    cpl_loss(c, r, alpha=0.1, bias=0.5).sum().backward()
    assert c.grad.item() == pytest.approx(-0.05)
    assert r.grad.item() == pytest.approx(0.025)


def test_segment_logps_sum_discount_and_mean():
    token_logps = torch.tensor([[0.0, -1.0, -2.0, -3.0], [-1.0, -1.0, 0.0, 0.0]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]])
    # sums: −6 and −2
    assert segment_logps(token_logps, mask).tolist() == pytest.approx([-6.0, -2.0])
    # γ = 0.5, t counted from the first response token: −1 − 0.5·2 − 0.25·3 = −2.75; −1 − 0.5 = −1.5
    assert segment_logps(token_logps, mask, gamma=0.5).tolist() == pytest.approx([-2.75, -1.5])
    # mean: −6/3 = −2, −2/2 = −1; discounted mean: −2.75 / 1.75, −1.5 / 1.5
    assert segment_logps(token_logps, mask, average=True).tolist() == pytest.approx([-2.0, -1.0])
    assert segment_logps(token_logps, mask, gamma=0.5, average=True).tolist() == pytest.approx(
        [-2.75 / 1.75, -1.0]
    )


def test_sequence_nll_is_per_sequence_token_mean():
    token_logps = torch.tensor([[0.0, -1.0, -2.0], [-4.0, 0.0, 0.0]])
    mask = torch.tensor([[0, 1, 1], [1, 0, 0]])
    assert sequence_nll(token_logps, mask).tolist() == pytest.approx([1.5, 4.0])


def test_ranked_loss_averages_pairs_within_record_then_records():
    # record 0: a pair (0 better than 1); record 1: three responses 2 > 3 > 4 → pairs (2,3), (2,4), (3,4)
    seq = torch.tensor([-10.0, -20.0, -10.0, -30.0, -4.0])
    better = torch.tensor([0, 2, 2, 3])
    worse = torch.tensor([1, 3, 4, 4])
    pair_record = torch.tensor([0, 1, 1, 1])
    loss, metrics = cpl_ranked_loss(seq, better, worse, pair_record, 2, alpha=0.1, bias=0.5)
    # record 0: ln 2 (see above)
    # record 1: (2,3): 0.1(−15 + 10) = −0.5 → softplus = 0.474077
    #           (2,4): 0.1(−2 + 10) = 0.8 → ln(1 + 2.2255409) = 1.1711007
    #           (3,4): 0.1(−2 + 30) = 2.8 → ln(1 + 16.444647) = 2.8590328
    rec1 = (softplus(-0.5) + softplus(0.8) + softplus(2.8)) / 3
    assert rec1 == pytest.approx((0.4740770 + 1.1711007 + 2.8590328) / 3, abs=1e-5)
    assert loss.item() == pytest.approx((math.log(2) + rec1) / 2, abs=1e-6)
    # accuracy: unbiased S⁺ > S⁻: (−10 > −20) yes, (−10 > −30) yes, (−10 > −4) no, (−30 > −4) no
    assert metrics["accuracy"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert metrics["margin"].tolist() == pytest.approx([1.0, 2.0, -0.6, -2.6])


def test_gather_token_logps_matches_log_softmax():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, 2, 3], [4, 0, 1]])
    mask = torch.tensor([[False, True, True], [True, False, False]])
    out = gather_token_logps(logits, labels, mask)
    ref = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1) * mask
    assert torch.allclose(out, ref, atol=1e-6)
    assert out.dtype == torch.float32
    # bf16 logits are upcast before the softmax
    assert gather_token_logps(logits.bfloat16(), labels, mask).dtype == torch.float32


def test_registry_names_cpl():
    assert LOSSES["cpl"] is cpl_loss

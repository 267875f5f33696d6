"""RLBFF losses (posttrain.losses.rlbff: training a principle reward model) against hand arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.losses.rlbff import scalar_fulfilment_loss, yes_no_loss


def test_yes_no_loss_is_two_way_cross_entropy():
    # row 1: Yes label, logits (Yes 2, No 0): −log(e²/(e²+1)) = log(1+e^−2) = 0.126928
    # row 2: No label,  logits (Yes 1, No 1): −log(1/2) = 0.693147
    # row 3: No label,  logits (Yes 3, No 0): −log(1/(e³+1)) = log(1+e³) = 3.048587
    yes = torch.tensor([2.0, 1.0, 3.0])
    no = torch.tensor([0.0, 1.0, 0.0])
    labels = torch.tensor([1, 0, 0])
    loss, metrics = yes_no_loss(yes, no, labels)
    assert loss.item() == pytest.approx((0.126928 + 0.693147 + 3.048587) / 3, abs=1e-5)
    # reward = logit(Yes) − logit(No) = 2, 0, 3; "Yes" means reward > 0, so row 2 (0, No) is right too
    assert metrics["accuracy"].tolist() == [1.0, 1.0, 0.0]
    assert metrics["reward/yes"].tolist() == [2.0]
    assert metrics["reward/no"].tolist() == [0.0, 3.0]
    assert metrics["p_yes"][0].item() == pytest.approx(1 / (1 + math.exp(-2)))


def test_yes_no_loss_ignores_a_shift_of_both_logits():
    labels = torch.tensor([1, 0])
    a, _ = yes_no_loss(torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.0]), labels)
    b, _ = yes_no_loss(torch.tensor([12.0, 9.0]), torch.tensor([10.5, 10.0]), labels)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


def test_scalar_loss_is_binary_cross_entropy():
    # r = 0 → log 2 either way; r = 2 with Yes → log(1+e^−2) = 0.126928; r = 2 with No → log(1+e²) = 2.126928
    loss, metrics = scalar_fulfilment_loss(torch.tensor([0.0, 2.0, 2.0]), torch.tensor([1, 1, 0]))
    assert loss.item() == pytest.approx((0.693147 + 0.126928 + 2.126928) / 3, abs=1e-5)
    assert metrics["accuracy"].tolist() == [0.0, 1.0, 0.0]

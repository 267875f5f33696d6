"""posttrain.losses: LOSSES names every loss of every method, and each entry keeps its return convention."""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch

from posttrain.losses import LOSSES, TRAINING_LOSSES

MATH = ("_loss", "_objective", "_penalty", "_advantages", "_rewards")


@pytest.mark.parametrize("method", ["cpl", "drpo", "rlbff"])
def test_every_loss_of_a_method_is_registered(method):
    module = importlib.import_module(f"posttrain.losses.{method}")
    public = {
        name: fn
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if fn.__module__ == module.__name__ and not name.startswith("_") and name.endswith(MATH)
    }
    missing = sorted(name for name, fn in public.items() if fn not in LOSSES.values())
    assert not missing, f"add to posttrain.losses.LOSSES: {missing}"


def test_training_losses_return_a_scalar_and_metrics():
    torch.manual_seed(0)
    logps = torch.randn(4, requires_grad=True)
    calls = {
        "cpl_ranked": lambda f: f(
            logps, torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0, 1]), 2, alpha=0.1, bias=0.5
        ),
        "drpo_loss": lambda f: f(
            torch.randn(2),
            torch.tensor(0.1),
            torch.tensor([0.5, 2.0, 0.2, 8.0]),
            beta=1.0,
            delta=0.0,
            world_size=1,
        ),
        "rlbff_yes_no": lambda f: f(torch.randn(3), torch.randn(3), torch.tensor([1, 0, 1])),
        "rlbff_scalar_head": lambda f: f(torch.randn(3), torch.tensor([1, 0, 1])),
    }
    assert set(calls) == TRAINING_LOSSES
    for name, call in calls.items():
        loss, metrics = call(LOSSES[name])
        assert loss.dim() == 0 and isinstance(metrics, dict), name
        assert all(isinstance(v, torch.Tensor) for v in metrics.values()), name


def test_terms_return_one_tensor():
    correct, lengths = torch.tensor([[1, 0, 1]]), torch.tensor([[5, 9, 7]])
    assert LOSSES["grpo_lp_advantages"](correct, lengths, alpha=0.5).shape == (1, 3)
    assert LOSSES["grpo_lp_rewards"](correct, lengths, alpha=0.5).shape == (1, 3)
    assert LOSSES["cpl"](torch.randn(2), torch.randn(2), alpha=0.1, bias=0.5).shape == (2,)
    assert LOSSES["drpo_kl_penalty"](torch.tensor(0.3), beta=1.0, delta=0.1).dim() == 0


def test_sequence_scores_and_grpo_lp_advantages_by_hand():
    from posttrain.losses.drpo import grpo_lp_advantages, length_penalized_rewards, sequence_scores

    logps = torch.tensor([[-1.0, -3.0, -9.0], [-2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert sequence_scores(logps, mask).tolist() == [-2.0, 0.0]
    correct, lengths = torch.tensor([[1, 1, 0]]), torch.tensor([[4, 8, 6]])
    shaped = length_penalized_rewards(correct, lengths, alpha=0.5)
    expected = (shaped - shaped.mean()) / (shaped.std() + 1e-4)
    assert torch.allclose(grpo_lp_advantages(correct, lengths, alpha=0.5), expected)
    assert grpo_lp_advantages(torch.tensor([[1]]), torch.tensor([[3]]), alpha=0.5).tolist() == [[0.0]]

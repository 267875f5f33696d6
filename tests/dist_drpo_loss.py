"""Run under `accelerate launch --config_file launch/cpu_2proc.yaml tests/dist_drpo_loss.py OUT.json` by
tests/test_distributed.py: the DRPO loss of a micro-batch split over 2 real DDP processes (gloo) against the
one-process loss of the same micro-batch, computed in every process on an undistributed copy of the policy.

The policy is a linear map from fixed token features to logits, shared by all rows (so both processes'
gradients reach the same weights); π_old is a perturbed copy, so the trust-region hinge is active. Each
process reduces its token sums and counts as DRPOTrainer._compute_loss does, calls
posttrain.losses.drpo.drpo_loss, and DDP averages the gradients. Rank 0 writes what the test compares.
"""

from __future__ import annotations

import copy
import json
import sys

import torch
from accelerate import Accelerator

from posttrain.losses.drpo import drpo_loss, drpo_objective, kl_hinge_penalty, local_totals, token_mean_kl

K, GROUPS, T, D, V = 4, 4, 6, 8, 11  # 4 groups of 4 answers, 6 token positions, 8 features, 11 tokens
BETA, DELTA, TEMPERATURE = 1e3, 1e-4, 0.6


def data():
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(GROUPS * K, T, D, generator=gen)
    lengths = torch.randint(1, T + 1, (GROUPS * K,), generator=gen)
    lengths[GROUPS * K // 2 :] = lengths[GROUPS * K // 2 :].clamp(max=2)  # the 2nd half holds fewer tokens
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    correct = torch.tensor([[1, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 1, 0]])
    return features, mask, correct


def logps(model, features, tokens):
    logits = model(features) / TEMPERATURE
    return torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def objective(new, mask, correct):
    scores = (new * mask).sum(1) / mask.sum(1)
    return drpo_objective(
        scores.view(-1, K), correct, mask.sum(1).view(-1, K), max_length=T, lam=0.1, tau=10.0
    )


def main(out_path: str) -> None:
    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(D, V)
    reference_model = copy.deepcopy(model)
    old_model = copy.deepcopy(model)
    with torch.no_grad():
        for p in old_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    features, mask, correct = data()
    with torch.no_grad():
        tokens = old_model(features).argmax(-1)  # answers π_old likes: KL(π_old‖π_θ) > 0 on them
        old = logps(old_model, features, tokens)

    # one process, the whole micro-batch
    new = logps(reference_model, features, tokens)
    kl = token_mean_kl(old, new, mask)
    reference = -objective(new, mask, correct).mean() + kl_hinge_penalty(kl, beta=BETA, delta=DELTA)
    reference.backward()

    # this process's half of the groups, DDP-wrapped
    ddp = acc.prepare(model)
    rank, world = acc.process_index, acc.num_processes
    rows = slice(rank * GROUPS * K // world, (rank + 1) * GROUPS * K // world)
    groups = slice(rank * GROUPS // world, (rank + 1) * GROUPS // world)
    new_local = logps(ddp, features[rows], tokens[rows])
    j = objective(new_local, mask[rows], correct[groups])
    kl_sum = ((old[rows] - new_local) * mask[rows]).sum()
    totals = acc.reduce(local_totals(j, kl_sum, mask[rows].sum()), reduction="sum")
    loss, parts = drpo_loss(j, kl_sum, totals, beta=BETA, delta=DELTA, world_size=world)
    acc.backward(loss)  # DDP averages the gradients over the processes
    per_process_kl = (kl_sum.detach() / mask[rows].sum()).unsqueeze(0)
    per_process_hinge = -j.detach().mean() + kl_hinge_penalty(per_process_kl, beta=BETA, delta=DELTA)

    losses = acc.gather(loss.detach().unsqueeze(0))
    old_style = acc.gather(per_process_hinge.view(1))
    grad_diff = max(
        (p.grad - r.grad).abs().max().item()
        for p, r in zip(acc.unwrap_model(ddp).parameters(), reference_model.parameters())
    )
    grad_scale = max(r.grad.abs().max().item() for r in reference_model.parameters())
    if acc.is_main_process:
        result = {
            "world_size": world,
            "loss_mean": losses.mean().item(),
            "loss_reference": reference.item(),
            "per_process_hinge_mean": old_style.mean().item(),
            "kl": parts["kl"].item(),
            "kl_reference": kl.item(),
            "grad_max_abs_diff": grad_diff,
            "grad_max_abs": grad_scale,
        }
        with open(out_path, "w") as f:
            json.dump(result, f)
    acc.wait_for_everyone()
    acc.end_training()


if __name__ == "__main__":
    main(sys.argv[1])

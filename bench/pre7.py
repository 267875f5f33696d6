"""The posttrain code paths that the speed-ups of issue #7 replaced, so a benchmark can time "before" and
"after" side by side in one run (same machine load, alternating) instead of comparing two runs.

Verbatim copies of the replaced code (git history has the originals), used only by bench/:

- ``token_logps``: CPLTrainer._token_logps projected every position onto the vocabulary (full (N, L, V)
  logits and their backward); the LM head now projects only positions that predict a response token.
- ``grads_finite``: the non-finite gradient guard ran ``isfinite`` + ``any`` over every gradient each
  step; it now reads each gradient once with ``aminmax``.
"""

from __future__ import annotations

import contextlib

import torch


def grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    """posttrain.trainers.guards.grads_finite before #7."""
    import torch.distributed as dist

    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    grads = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
    device = grads[0].device if grads else torch.device("cpu")
    bad = torch.zeros((), device=device)
    for g in grads:
        bad = bad + (~torch.isfinite(g)).any().float()
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl" and bad.device.type != "cuda":
            bad = bad.cuda()
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return bool(bad.item() == 0)


def token_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """posttrain.trainers.cpl_trainer.CPLTrainer._token_logps before #7."""
    from posttrain.trainers.utils import gather_token_logps

    logits = model(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
    ).logits
    mask = inputs["response_mask"][:, 1:].bool()
    return gather_token_logps(logits[:, :-1], inputs["input_ids"][:, 1:], mask), mask


@contextlib.contextmanager
def guard():
    """Run the block with the pre-#7 guard (the wrapped optimizer step looks the function up per call)."""
    from posttrain.trainers import guards

    current = guards.grads_finite
    guards.grads_finite = grads_finite
    try:
        yield
    finally:
        guards.grads_finite = current


def cpl_trainer_class():
    from posttrain.trainers.cpl_trainer import CPLTrainer

    class CPLTrainerPre7(CPLTrainer):
        _token_logps = token_logps

    return CPLTrainerPre7


def train_block(trainer) -> list[float]:
    """harness.train_block with the pre-#7 guard."""
    import harness

    with guard():
        return harness.train_block(trainer)

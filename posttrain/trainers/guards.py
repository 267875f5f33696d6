"""Non-finite steps: skip an update whose gradients hold NaN/inf, count it, stop after too many in a row.

A single bad batch (an overflow in bf16, a degenerate sequence) should cost one step, not the run: one NaN
gradient applied by Adam poisons every parameter it touches, and a model saved after that is useless.
``transformers`` only filters NaN losses out of its logs (``logging_nan_inf_filter``); its updates still
happen.

How: :class:`NonFiniteGuardMixin` wraps the innermost torch optimizer's ``step`` (under accelerate, DDP,
FSDP and DeepSpeed ZeRO alike it is the object that finally changes the weights: for ZeRO it holds this
rank's fp32 partition). Before stepping it checks that every gradient it owns is finite and agrees with the
other processes (one all-reduce; sharded engines see only their own slice); if any process saw a
non-finite value, every process skips the update together and the gradients are dropped. Skipped updates
are logged as ``nonfinite_skipped`` (running total). After ``max_nonfinite_steps`` consecutive skips the run
stops with :class:`NonFiniteTraining` (``posttrain train`` reports it and writes no final model; checkpoints
written before hold finite weights, since no non-finite update was ever applied). 0 disables the guard.

Deviation from a GradScaler-style skip: the LR scheduler still advances on a skipped step (the Trainer
steps it unconditionally); with a handful of skips in a long run the schedule shifts by as many steps.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch

from posttrain import log
from posttrain.errors import IncompleteRun
from posttrain.trainers.utils import innermost_optimizer

DEFAULT_MAX_NONFINITE_STEPS = 5


class NonFiniteTraining(IncompleteRun):
    """Too many consecutive updates had non-finite gradients."""


@dataclass
class GuardArguments:
    """Fields shared by every posttrain trainer config (recipe section ``training:``)."""

    max_nonfinite_steps: int = field(
        default=DEFAULT_MAX_NONFINITE_STEPS,
        metadata={
            "help": "Updates with NaN/inf gradients are skipped and counted; stop after this many in a row "
            "(0: no check, every update is applied)."
        },
    )


def grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient held by ``optimizer`` is finite, agreed across processes."""
    import torch.distributed as dist

    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    # FSDP2 holds DTensor gradients: check this rank's shard (the all-reduce below covers the others)
    grads = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
    device = grads[0].device if grads else torch.device("cpu")
    # A tensor is finite exactly when its min and max are (NaN propagates to both, ±inf shows in one).
    # aminmax reads each gradient once; isfinite(g) writes a bool copy and any() reads it again, which
    # took ~0.3 s per step for a 135M model on one CPU thread, several percent of a training step.
    extremes = [v.float().to(device) for g in grads if g.numel() for v in torch.aminmax(g)]
    bad = (
        (~torch.isfinite(torch.stack(extremes))).any().float() if extremes else torch.zeros((), device=device)
    )
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl" and bad.device.type != "cuda":
            bad = bad.cuda()
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return bool(bad.item() == 0)


class NonFiniteGuardMixin:
    """Mixed into a ``transformers.Trainer`` subclass (before the Trainer): see the module docstring."""

    nonfinite_skipped: int = 0
    _nonfinite_in_a_row: int = 0

    def create_optimizer(self, *args, **kwargs):
        optimizer = super().create_optimizer(*args, **kwargs)
        limit = getattr(self.args, "max_nonfinite_steps", DEFAULT_MAX_NONFINITE_STEPS)
        inner = innermost_optimizer(optimizer)
        if limit and not getattr(inner, "_posttrain_guarded", False):
            step = inner.step

            def guarded_step(opt, *step_args, **step_kwargs):
                if grads_finite(opt):
                    self._nonfinite_in_a_row = 0
                    return step(*step_args, **step_kwargs)
                self.nonfinite_skipped += 1
                self._nonfinite_in_a_row += 1
                opt.zero_grad(set_to_none=True)
                log.info(
                    f"step {self.state.global_step + 1}: non-finite gradients, update skipped "
                    f"({self._nonfinite_in_a_row} in a row, {self.nonfinite_skipped} in total)"
                )
                if self._nonfinite_in_a_row >= limit:
                    raise NonFiniteTraining(
                        f"{limit} consecutive updates had NaN/inf gradients (step {self.state.global_step + 1}); "
                        "stopped without saving. Lower the learning rate, check the data, or use fp32/bf16 "
                        "instead of fp16 (training.max_nonfinite_steps sets the limit)"
                    )
                return None

            # a bound method: LR schedulers wrap ``optimizer.step`` through its ``__func__``
            inner.step = types.MethodType(guarded_step, inner)
            inner._posttrain_guarded = True
        return optimizer

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if self.nonfinite_skipped and "loss" in logs:
            logs["nonfinite_skipped"] = float(self.nonfinite_skipped)
        super().log(logs, *args, **kwargs)

"""Pieces shared by posttrain's trainers: token log-probs, metric logging, optimizer restarts."""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict

import torch


def gather_token_logps(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log π(label) at masked positions, 0 elsewhere; (N, L, V), (N, L), (N, L) → (N, L) fp32.

    Only masked rows of the logits are upcast and normalised, so prompt and padding positions cost no
    fp32 copy of the vocabulary dimension.
    """
    return scatter_token_logps(logits[mask], labels, mask)


def scatter_token_logps(selected: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``gather_token_logps`` from the logits of the masked positions only: (T, V) rows in ``mask``'s
    row-major order (what ``logits[mask]`` gives), (N, L), (N, L) → (N, L) fp32, 0 elsewhere."""
    logps = torch.log_softmax(selected.float(), dim=-1).gather(-1, labels[mask].unsqueeze(-1)).squeeze(-1)
    out = torch.zeros(mask.shape, dtype=torch.float32, device=selected.device)
    return out.masked_scatter(mask, logps)


class MetricsMixin:
    """Collects per-step metrics and merges their means (across processes) into the Trainer's logs.

    Evaluation reuses ``compute_loss`` (loss and metrics only): the batches carry trainer-specific
    columns the model's forward does not take, so the Trainer's default ``prediction_step`` cannot run.
    """

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    _metrics: dict[str, defaultdict]

    def record_metrics(self, mode: str, metrics: dict[str, torch.Tensor]) -> None:
        """Per-process means of every metric, averaged over processes in one gather (this runs every step)."""
        local = torch.stack(
            [v.detach().float().mean() if v.numel() else v.new_tensor(float("nan")) for v in metrics.values()]
        )
        means = torch.nanmean(self.accelerator.gather(local.unsqueeze(0)), dim=0).tolist()
        for key, value in zip(metrics, means):
            self._metrics[mode][key].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        for key, values in self._metrics[mode].items():
            logs[prefix + key] = sum(values) / len(values)
        self._metrics[mode].clear()
        super().log(logs, start_time)


def innermost_optimizer(optimizer) -> torch.optim.Optimizer:
    # AcceleratedOptimizer and DeepSpeed's ZeRO optimizers wrap a torch optimizer in `.optimizer`.
    while hasattr(optimizer, "optimizer") and optimizer.optimizer is not optimizer:
        optimizer = optimizer.optimizer
    return optimizer


def new_schedule(trainer, num_training_steps: int) -> None:
    """Replace the LR schedule with a fresh one of ``num_training_steps`` steps (same type and warm-up)."""
    inner = innermost_optimizer(trainer.optimizer)
    trainer.lr_scheduler = None
    scheduler = trainer.create_scheduler(num_training_steps=max(num_training_steps, 1), optimizer=inner)
    if trainer.is_deepspeed_enabled:  # the engine steps its own reference to the scheduler
        trainer.model_wrapped.lr_scheduler = scheduler


def restart_optimizer_and_schedule(trainer) -> None:
    """Forget the optimizer's moments and start a fresh LR schedule for the remaining steps."""
    inner = innermost_optimizer(trainer.optimizer)
    inner.state = defaultdict(dict)  # Adam-style optimizers re-create their moments lazily
    new_schedule(trainer, trainer.state.max_steps - trainer.state.global_step)


@functools.cache
def checkpointing_field() -> str:
    """TrainingArguments' name for activation checkpointing: ``activation_checkpointing`` from transformers
    5.23, ``gradient_checkpointing`` before (the name vLLM's supported transformers range still uses)."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"

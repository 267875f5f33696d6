"""DRPO trainer: TRL's GRPOTrainer with the decoupled, group-wise DRPO objective (arXiv 2510.04474).

Rollouts (HF generate or vLLM colocate/server), reward computation, DeepSpeed/FSDP, PEFT and logging are
GRPOTrainer's. What changes, and only that, is overridden:

- ``_calculate_rewards`` / ``_generate_and_score_completions``: keep the gathered rewards, derive binary
  correctness and completion lengths per answer (and, for the ``grpo_lp`` baseline, length-penalised
  advantages); log accuracy, mean length of correct / incorrect answers and the fraction of groups that
  carry a signal (both correct and incorrect answers).
- ``_prepare_inputs``: TRL shuffles a generation batch row by row before splitting it into micro-batches,
  which scatters a prompt's answers over several micro-batches. DRPO's objective is a function of the
  whole group (softmax over its correct answers, log-mean-exp over its incorrect ones), so here whole
  groups are shuffled instead and every micro-batch holds complete groups (as the official code reorders
  its batches). Each process already generates whole groups: the config requires
  ``per_device_train_batch_size`` to be a multiple of ``num_generations``.
- ``_compute_loss``: −mean_groups J + (β/2)[KL(π_old‖π_θ) − δ]_+² (posttrain.losses.drpo), with
  s(o) the mean token log-prob at the sampling temperature; the mean over groups and the token-mean KL
  span the micro-batch of all processes (sums and counts all-reduced before the hinge, as the official code
  gathers it). π_old comes from TRL (``old_per_token_logps``, computed when a rollout spans several
  optimizer steps; DRPOConfig's default is 4 updates per rollout, as the paper). The grpo / grpo_lp
  baselines use TRL's loss (``loss_type="grpo"`` by default, the paper's per-sequence averaging).
- Reward functions receive a ``truncated`` column (completion cut at ``max_completion_length``), which
  :func:`posttrain.rewards.math.math_correctness` grades wrong.

These overrides, and the GRPOTrainer attributes and batch keys they read, are TRL internals: each is listed in
:mod:`posttrain.trainers.trl_surface`, which a test checks against the installed TRL.

Deviations: text-only (no multimodal batches in the group-preserving split); rollouts, π_old log-probs
and the baselines' loss are TRL's GRPOTrainer's, not verl's; no reference-model KL for drpo/disco
(``beta`` is refused; the paper uses none); the reward is :mod:`posttrain.rewards.math`'s (deviations there).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from trl import GRPOTrainer

from posttrain.checkpoints import CheckpointMixin
from posttrain.losses.drpo import (
    drpo_loss,
    drpo_objective,
    grpo_lp_advantages,
    local_totals,
    sequence_scores,
)
from posttrain.trainers import vllm_rollouts
from posttrain.trainers.drpo_config import GROUPWISE_OBJECTIVES, DRPOConfig
from posttrain.trainers.guards import NonFiniteGuardMixin
from posttrain.trainers.trl_surface import split_tensor_dict


def shuffle_groups(batch: dict[str, Any], group_size: int, generator: torch.Generator | None = None) -> dict:
    """Permute the groups of a batch (rows [g0 × K, g1 × K, …]) while keeping each group's rows together.

    Tensors and lists with one entry per row are permuted; scalars and None pass through.
    """
    rows = len(next(v for v in batch.values() if v is not None and not _is_scalar(v)))
    if rows % group_size:
        raise ValueError(f"{rows} rows do not form whole groups of {group_size}")
    order = torch.randperm(rows // group_size, generator=generator)
    perm = (order.unsqueeze(1) * group_size + torch.arange(group_size)).flatten()

    def permute(value):
        if value is None or _is_scalar(value):
            return value
        if isinstance(value, torch.Tensor):
            return value[perm.to(value.device)]
        return [value[i] for i in perm.tolist()]

    return {key: permute(value) for key, value in batch.items()}


def truncation_flags(completion_ids: list[list[int]], stop_ids) -> list[bool]:
    """Per completion: True when it was cut at the length limit, i.e. its last token is not an end-of-sequence
    or pad token (TRL's rule for ``completions/clipped_ratio``); an empty completion is not truncated."""
    stops = {int(t) for t in stop_ids if t is not None}
    return [bool(len(ids)) and int(ids[-1]) not in stops for ids in completion_ids]


def _is_scalar(value) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim == 0


def groups_intact(prompt_ids: torch.Tensor, group_size: int) -> bool:
    """True when every consecutive block of ``group_size`` rows holds one prompt (i.e. one group)."""
    if prompt_ids.shape[0] % group_size:
        return False
    blocks = prompt_ids.view(-1, group_size, prompt_ids.shape[-1])
    return bool((blocks == blocks[:, :1]).all())


class DRPOTrainer(CheckpointMixin, NonFiniteGuardMixin, GRPOTrainer):
    """GRPOTrainer with the DRPO / DisCO objectives and the GRPO-LP baseline (``args.objective``)."""

    args: DRPOConfig

    def __init__(self, *args, **kwargs):
        config = kwargs.get("args")
        if config is not None and config.use_vllm:
            model = kwargs.get("model", args[0] if args else None)
            vllm_rollouts.prepare(config, getattr(model, "name_or_path", model))
        super().__init__(*args, **kwargs)
        if self.use_vllm:
            # same object, TRL's class plus a weight sync that also works on vLLM's CPU backend
            self.vllm_generation.__class__ = vllm_rollouts.vllm_generation_class()
        self._gathered_rewards: torch.Tensor | None = None
        # the reward that decides correctness, by position in reward_funcs (None = weighted sum)
        self._correct_index: int | None = None
        if self.args.correct_reward is not None:
            if self.args.correct_reward not in self.reward_func_names:
                raise ValueError(
                    f"correct_reward '{self.args.correct_reward}' is not among the reward functions "
                    f"{self.reward_func_names}"
                )
            self._correct_index = self.reward_func_names.index(self.args.correct_reward)

    @property
    def checkpoint_every(self) -> int:
        """A graceful stop (SIGTERM) waits for a rollout boundary: see DRPOConfig.rollout_boundary_steps."""
        return self.args.rollout_boundary_steps

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            # TRL counts micro-steps from 0 in every process: continue the count of the resumed run, with
            # no buffered rollout (checkpoints are taken on rollout boundaries, so the next step generates)
            self._step = self.state.global_step * self.args.gradient_accumulation_steps
            self._buffered_inputs = None

    @property
    def _groupwise(self) -> bool:
        return self.args.objective in GROUPWISE_OBJECTIVES

    def _group_size(self, mode: str) -> int:
        if mode == "train":
            return self.num_generations
        return self.num_generations_eval or self.num_generations

    # -- rollouts: correctness, lengths, baseline advantages, metrics ---------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # every reward function sees which completions were cut at the length limit (math_correctness
        # grades them wrong, as the official DRPO reward does); TRL's rule of completions/clipped_ratio
        stops = [*self.eos_token_ids, self._tokenizer.pad_token_id]
        flags = truncation_flags(completion_ids_list, stops)
        inputs = [{**example, "truncated": flag} for example, flag in zip(inputs, flags)]
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards  # (all processes' rows, n_funcs), in process order
        return rewards

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        k = self._group_size(mode)
        rewards = self._gathered_rewards
        if self._correct_index is None:
            signal = (rewards * self.reward_weights.to(rewards.device).unsqueeze(0)).nansum(dim=1)
        else:
            signal = torch.nan_to_num(rewards[:, self._correct_index], nan=0.0)
        correct = signal > self.args.correct_threshold
        local_lengths = out["completion_mask"].sum(dim=1)
        lengths = self.accelerator.gather(local_lengths)
        n_local = local_lengths.shape[0]
        local = slice(
            self.accelerator.process_index * n_local, (self.accelerator.process_index + 1) * n_local
        )

        if self.args.objective == "grpo_lp":
            advantages = grpo_lp_advantages(
                correct.view(-1, k), lengths.view(-1, k), alpha=self.args.length_penalty_alpha
            )
            out["advantages"] = advantages.flatten()[local]

        out["correct"] = correct[local]
        out["lengths"] = local_lengths
        groups = correct.view(-1, k)
        n_pos = groups.sum(dim=1)
        valid = (n_pos > 0) & (n_pos < k)
        lengths_f = lengths.float()
        metrics = self._metrics[mode]
        metrics["accuracy"].append(correct.float().mean().item())
        metrics["groups/valid_fraction"].append(valid.float().mean().item())
        metrics["groups/all_correct_fraction"].append((n_pos == k).float().mean().item())
        for name, rows in (("correct", correct), ("incorrect", ~correct)):
            value = lengths_f[rows].mean().item() if rows.any() else math.nan
            metrics[f"length/{name}_mean"].append(value)
        return out

    # -- micro-batches of whole groups ----------------------------------------------------------------

    def _prepare_inputs(self, generation_batch):
        if not (self.model.training and self._groupwise):
            return super()._prepare_inputs(generation_batch)
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every == 0 or self._buffered_inputs is None:
            batch = self._generate_and_score_completions(generation_batch)
            batch = shuffle_groups(batch, self.num_generations)
            self._buffered_inputs = split_tensor_dict(batch, self.args.steps_per_generation)
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    # -- loss -----------------------------------------------------------------------------------------

    def _compute_loss(self, model, inputs):
        if not self._groupwise:
            return super()._compute_loss(model, inputs)
        mode = "train" if self.model.training else "eval"
        k = self._group_size(mode)
        if not groups_intact(inputs["prompt_ids"], k):
            # a bug, not a user error: the objective would silently mix answers of different prompts
            raise RuntimeError(f"DRPO micro-batch does not hold whole groups of {k} answers")
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, mask = inputs["completion_ids"], inputs["completion_mask"]
        logps, _, _ = self._get_per_token_logps_and_entropies(
            model,
            torch.cat([prompt_ids, completion_ids], dim=1),
            torch.cat([prompt_mask, mask], dim=1),
            completion_ids.size(1),
        )
        maskf = mask.to(logps.dtype)
        scores = sequence_scores(logps, mask)
        lam = math.inf if self.args.objective == "disco" else self.args.length_lambda
        objective = drpo_objective(
            scores.view(-1, k),
            inputs["correct"].view(-1, k),
            inputs["lengths"].view(-1, k),
            max_length=self.max_completion_length,
            lam=lam,
            tau=self.args.tau,
            shape=self.args.length_reward,
            all_correct=self.args.all_correct,
        )
        old = inputs.get("old_per_token_logps")
        old = logps.detach() if old is None else old
        # the trust region and the objective's mean span the micro-batch of all processes, as in the official
        # code (which all-gathers it): sums and counts are reduced across processes before the hinge
        kl_sum = ((old - logps) * maskf).sum()
        totals = local_totals(objective, kl_sum, maskf.sum())
        world = self.accelerator.num_processes
        if world > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        loss, parts = drpo_loss(
            objective,
            kl_sum,
            totals,
            beta=self.args.trust_region_beta,
            delta=self.args.trust_region_delta,
            world_size=world,
        )

        score_mean = self.accelerator.gather(scores.mean().detach().float().unsqueeze(0)).mean().item()
        for name in ("objective", "kl", "kl_penalty"):
            self._metrics[mode][name].append(parts[name].item())
        self._metrics[mode]["score_mean"].append(score_mean)
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        return loss / normalizer

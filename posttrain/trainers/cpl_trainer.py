"""CPL trainer: Contrastive Preference Learning for LLMs (Hejna et al., ICLR 2024, arXiv 2310.13639).

CPL learns a policy straight from preferences: it treats α·log π as the optimal advantage, so a
preference between two responses is explained by their summed (discounted) log-likelihoods and a
contrastive loss trains the policy directly — no reward model, no RL, and (unlike DPO) no reference
model. The math lives in :mod:`posttrain.losses.cpl`; this trainer computes token log-probs of every
response, calls it, and adds CPL-BC's behaviour-cloning term:

    loss = mean_records mean_pairs softplus(λ·S⁻ − S⁺) + w · NLL(bc_target tokens)

with S = α·Σ_t γ^t log π(y_t | x, y_<t) over response tokens (or the γ-weighted mean, ``length_normalize``).

It subclasses ``transformers.Trainer`` and overrides the loss (``compute_loss``), evaluation and logged
metrics (``prediction_step``, ``log``), the optimizer and LR schedule (``create_optimizer``: the non-finite
gradient guard; ``create_scheduler``, ``_save_optimizer_and_scheduler``, ``_load_optimizer_and_scheduler``:
the BC warm-up restart and the CPL-KL reference), checkpointing (``_save_checkpoint``,
``_init_training_state``, ``_run_epoch``: complete-marker checkpoints, an exact stop at ``max_steps``) and
``create_model_card``, most of them through posttrain's mixins; the training loop, DeepSpeed, FSDP, PEFT,
mixed precision and the logging integrations stay upstream's.
TRL's ``DPOTrainer`` was not used as the base because CPL's ranked (K > 2 responses) mode and its BC
warm-up do not fit DPO's chosen/rejected batches, and overriding its loss would replace most of it.

Deviations from the paper and why:
- Log-softmax is computed in fp32 on response positions only (memory; bf16 sums lose precision), and
  the LM head projects only those positions where the model supports it (speed, no change in the math).
- BC warm-up (``bc_warmup_steps``): as the official code (jhejna/cpl ``research/algs/cpl.py``), the
  learning rate is held at ``learning_rate`` during the warm-up (a schedule of constant 1), then the
  optimizer state restarts and the configured schedule runs over the remaining steps; here inside one run
  (the official code builds a new optimizer), so one launch and one checkpoint series cover both phases.
- ``kl_reference`` (CPL-KL, paper App. A) scores log π − log π_ref. The reference is, by default
  (``kl_reference_weights: after_bc_warmup``), the policy's weights at the end of the BC warm-up, as the
  official ``cpl_kl.py`` (which requires a warm-up); without a warm-up, or with
  ``kl_reference_weights: initial``, it is the initial model: a frozen copy, or with PEFT the base model
  with adapters disabled. With PEFT the reference taken after a warm-up is a full copy of the model
  (adapter included). The warm-up reference is saved in each later checkpoint (``cpl_reference.safetensors``)
  so a resumed run scores against the same weights; it is not available under DeepSpeed ZeRO-3 (refused).
"""

from __future__ import annotations

import copy
import os
from collections import defaultdict

import torch
from transformers import Trainer, TrainerCallback

from posttrain.checkpoints import CheckpointMixin
from posttrain.data.preference import adapt_preferences
from posttrain.data.tokenize import RankedPreferenceCollator, tokenize_preferences
from posttrain.errors import ConfigFieldError, UserError
from posttrain.lm_head import project_positions
from posttrain.losses.cpl import cpl_ranked_loss, segment_logps, sequence_nll
from posttrain.trainers.cpl_config import CPLConfig
from posttrain.trainers.guards import NonFiniteGuardMixin
from posttrain.trainers.utils import (
    MetricsMixin,
    innermost_optimizer,
    new_schedule,
    restart_optimizer_and_schedule,
    scatter_token_logps,
)

REFERENCE_FILE = "cpl_reference.safetensors"


class _RestartAfterBCWarmup(TrainerCallback):
    def __init__(self, trainer: CPLTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == args.bc_warmup_steps:
            if self.trainer._reference_after_warmup:
                self.trainer._snapshot_reference()
            restart_optimizer_and_schedule(self.trainer)


class CPLTrainer(CheckpointMixin, NonFiniteGuardMixin, MetricsMixin, Trainer):
    """Trainer for CPL on pairwise or ranked preferences. See the module docstring for the math."""

    _tag_names = ["posttrain", "cpl"]

    def __init__(
        self,
        model,
        args: CPLConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        peft_config=None,
        ref_model=None,
        data_collator=None,
        callbacks=None,
        optimizers=(None, None),
    ):
        if processing_class is None:
            raise ValueError("CPLTrainer needs processing_class (the tokenizer)")
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        self._peft_reference = False
        # CPL-KL's reference becomes the policy at the end of the BC warm-up (official code)
        self._reference_after_warmup = (
            args.kl_reference and args.bc_warmup_steps > 0 and args.kl_reference_weights == "after_bc_warmup"
        )
        zero3 = args.deepspeed_plugin is not None and args.deepspeed_plugin.zero_stage == 3
        if self._reference_after_warmup and zero3:
            raise ConfigFieldError(
                "kl_reference_weights",
                "the reference after the BC warm-up is not available under DeepSpeed ZeRO-3 (sharded "
                "weights); use kl_reference_weights: initial, or ZeRO-2 / DDP",
            )
        if args.kl_reference and ref_model is None:
            if hasattr(model, "disable_adapter"):
                self._peft_reference = True
            else:
                ref_model = copy.deepcopy(model)
        if ref_model is not None:
            ref_model.eval().requires_grad_(False)
        train_dataset = self._prepare_dataset(train_dataset, processing_class, args)
        if isinstance(eval_dataset, dict):
            eval_dataset = {
                k: self._prepare_dataset(v, processing_class, args) for k, v in eval_dataset.items()
            }
        else:
            eval_dataset = self._prepare_dataset(eval_dataset, processing_class, args)
        collator = data_collator or RankedPreferenceCollator(pad_token_id=processing_class.pad_token_id)
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        # The loss is a mean over records, so the Trainer must divide it by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.ref_model = None
        if ref_model is not None:
            if self.is_deepspeed_enabled:
                from posttrain.trainers.trl_surface import prepare_deepspeed

                self.ref_model = prepare_deepspeed(ref_model, self.accelerator)
            else:
                self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)
        if args.bc_warmup_steps > 0:
            self.add_callback(_RestartAfterBCWarmup(self))

    def _load_optimizer_and_scheduler(self, checkpoint):
        warmed_up = self.args.bc_warmup_steps <= self.state.global_step
        if checkpoint is not None and self._reference_after_warmup and warmed_up:
            self._load_reference(checkpoint)
        # Resuming after the BC warm-up: the schedule was restarted there over the remaining steps. Rebuild
        # that schedule before its state is loaded: a LambdaLR checkpoint holds the step count, not the
        # schedule's length, which would otherwise come back as max_steps.
        if checkpoint is not None and 0 < self.args.bc_warmup_steps <= self.state.global_step:
            # A new schedule sets the learning rates to its step 0; under DeepSpeed the optimizer state
            # (with the right rates) was already loaded and is not loaded again below, so keep its rates.
            groups = innermost_optimizer(self.optimizer).param_groups
            rates = [group["lr"] for group in groups]
            new_schedule(self, self.state.max_steps - self.args.bc_warmup_steps)
            for group, rate in zip(groups, rates):
                group["lr"] = rate
        super()._load_optimizer_and_scheduler(checkpoint)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        # BC warm-up at a constant learning rate (the official code's do-nothing schedule); the configured
        # schedule is created at the end of the warm-up over the remaining steps (restart_optimizer_and_schedule)
        if self.args.bc_warmup_steps > 0 and self.state.global_step < self.args.bc_warmup_steps:
            if self.lr_scheduler is None:
                opt = self.optimizer if optimizer is None else optimizer
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
                self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps=num_training_steps, optimizer=optimizer)

    def _reference_module(self):
        return None if self.ref_model is None else self.accelerator.unwrap_model(self.ref_model)

    @torch.no_grad()
    def _snapshot_reference(self) -> None:
        """The reference becomes a frozen copy of the policy as it is now (the end of the BC warm-up)."""
        policy = self.accelerator.unwrap_model(self.model)
        reference = self._reference_module()
        if reference is None:  # PEFT: the reference was the base model; now a full copy with the adapter
            reference = copy.deepcopy(policy).eval().requires_grad_(False)
            self.ref_model = self.accelerator.prepare_model(reference, evaluation_mode=True)
            self._peft_reference = False
        else:
            reference.load_state_dict(policy.state_dict())
        self._reference_snapshot_taken = True

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if getattr(self, "_reference_snapshot_taken", False) and self.args.should_save:
            from safetensors.torch import save_model

            save_model(self._reference_module(), os.path.join(output_dir, REFERENCE_FILE))

    def _load_reference(self, checkpoint: str) -> None:
        """Resuming after the BC warm-up: the reference is the warm-up snapshot saved with the checkpoint."""
        from safetensors.torch import load_model

        path = os.path.join(checkpoint, REFERENCE_FILE)
        if not os.path.isfile(path):
            raise UserError(
                f"{checkpoint}: no {REFERENCE_FILE} (CPL-KL's reference from the BC warm-up); this checkpoint "
                "cannot be resumed with kl_reference_weights: after_bc_warmup"
            )
        if self._reference_module() is None:
            self._snapshot_reference()  # PEFT: build the full copy, then overwrite it with the saved one
        load_model(self._reference_module(), path)
        self._reference_snapshot_taken = True

    @staticmethod
    def _prepare_dataset(dataset, tokenizer, args: CPLConfig):
        """Accept tokenized, normalized or raw preference data (lists or datasets.Dataset)."""
        if dataset is None:
            return None
        from datasets import Dataset

        columns = (
            dataset.column_names if isinstance(dataset, Dataset) else list(dataset[0]) if dataset else []
        )
        if "prompt_ids" in columns:
            return _with_length(dataset if isinstance(dataset, Dataset) else Dataset.from_list(list(dataset)))
        records = dataset.to_list() if isinstance(dataset, Dataset) else list(dataset)
        if "responses" not in columns or "scores" not in columns:
            records, _ = adapt_preferences(records, "auto", "train_dataset")
        tokenized = tokenize_preferences(
            records, tokenizer, max_length=args.max_length, max_prompt_length=args.max_prompt_length
        )
        return _with_length(Dataset.from_list(tokenized))

    def _token_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        mask = inputs["response_mask"][:, 1:].bool()
        labels = inputs["input_ids"][:, 1:]
        # Project onto the vocabulary only the positions that predict a response token (position t
        # predicts token t + 1): the LM head and its backward cost as much per position as ~a quarter of
        # the transformer here (a 49k vocabulary), and prompt and padding positions are most of a batch.
        # The model returns those rows' logits, (T, V), in the order ``logits[mask]`` would give.
        with project_positions(model, torch.nn.functional.pad(mask, (0, 1))):
            logits = model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
            ).logits
        return scatter_token_logps(logits, labels, mask), mask

    @torch.no_grad()
    def _reference_token_logps(self, inputs) -> torch.Tensor:
        if self._peft_reference:
            unwrapped = self.accelerator.unwrap_model(self.model)
            with unwrapped.disable_adapter():
                return self._token_logps(self.model, inputs)[0]
        return self._token_logps(self.ref_model, inputs)[0]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args: CPLConfig = self.args
        mode = "train" if model.training else "eval"
        token_logps, mask = self._token_logps(model, inputs)
        nll = sequence_nll(token_logps, mask)
        bc_rows = inputs["is_best"] if args.bc_target == "chosen" else torch.ones_like(inputs["is_best"])
        bc_loss = nll[bc_rows].mean()

        score_logps = token_logps
        if args.kl_reference:
            score_logps = token_logps - self._reference_token_logps(inputs)
        seq_logps = segment_logps(score_logps, mask, gamma=args.gamma, average=args.length_normalize)
        num_records = int(inputs["is_best"].sum())
        cpl, metrics = cpl_ranked_loss(
            seq_logps,
            inputs["better"],
            inputs["worse"],
            inputs["pair_record"],
            num_records,
            alpha=args.alpha,
            bias=args.bias,
        )
        in_warmup = mode == "train" and self.state.global_step < args.bc_warmup_steps
        if in_warmup:
            loss = bc_loss
        elif args.bc_weight > 0:
            loss = cpl + args.bc_weight * bc_loss
        else:
            loss = cpl
        metrics.update({"cpl_loss": cpl.detach(), "bc_loss": bc_loss.detach()})
        self.record_metrics(mode, metrics)
        return (loss, {"seq_logps": seq_logps.detach()}) if return_outputs else loss


def _with_length(dataset):
    """Add a ``length`` column: prompt + longest response, the width a record brings to a padded batch. It
    lets ``train_sampling_strategy: group_by_length`` batch records of similar length (less padding; the
    Trainer cannot infer lengths without ``input_ids``); the collator ignores it."""
    if "length" in dataset.column_names or "prompt_ids" not in dataset.column_names:
        return dataset
    lengths = [len(p) + max(map(len, r)) for p, r in zip(dataset["prompt_ids"], dataset["response_ids"])]
    return dataset.add_column("length", lengths)

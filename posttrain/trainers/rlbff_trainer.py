"""RLBFF principle reward-model trainer (NVIDIA, arXiv 2509.21319).

A principle RM learns binary feedback — does response y to context x satisfy principle P? — so users pick
the principles at inference instead of living with one scalar "how good". Two forms share this trainer
(``RLBFFConfig.form``), each a pure loss in :mod:`posttrain.losses.rlbff`:

- ``yes_no`` (the paper's scalar RM): a causal LM reads [x…, assistant: y, user: "Evaluate the response …
  principle: P. Only answer Yes or No."] with the generation prompt; reward = logit(Yes) − logit(No) at
  the next token, trained with cross-entropy over the two-way {Yes, No} softmax at that position only.
- ``scalar_head``: a sequence-classification head (one output) on the same input, BCE on fulfilment.

The Bradley–Terry baseline (``form: bradley_terry``) is TRL's ``RewardTrainer`` on preference pairs,
subclassed only to save the RM's form beside the weights.

This trainer subclasses ``transformers.Trainer`` and overrides ``compute_loss``, ``prediction_step``,
``log``, ``_save`` and (for ``batch_by_context``) ``_get_train_sampler``. Batches are left-padded so the position every form reads is the last one, and the
causal LM projects only that position onto the vocabulary (``logits_to_keep=1``).

Deviations from the paper and why:
- The paper fine-tunes a 70B model on HelpSteer3-Principle; the recipes here default to small models and
  LoRA. The loss and the input format are the paper's.
- A trailing period of the principle is dropped before it is put in the template (else "..". appears).
- Records longer than ``max_length`` are dropped rather than truncated: truncation would cut the response
  or the question, the parts the label is about.
"""

from __future__ import annotations

from collections import defaultdict

from transformers import Trainer
from trl import RewardTrainer

from posttrain.checkpoints import CheckpointMixin
from posttrain.data.principle import ContextGroupedSampler, LeftPadCollator
from posttrain.losses.rlbff import scalar_fulfilment_loss, yes_no_loss
from posttrain.rewards.principle import save_rm_config, yes_no_token_ids
from posttrain.trainers.guards import NonFiniteGuardMixin
from posttrain.trainers.rlbff_config import RLBFFConfig
from posttrain.trainers.utils import MetricsMixin, checkpointing_field


def _yes_no_step(trainer, model, inputs):
    logits = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        position_ids=inputs["position_ids"],
        logits_to_keep=1,
        use_cache=False,
    ).logits[:, -1]
    return yes_no_loss(logits[:, trainer.yes_id], logits[:, trainer.no_id], inputs["fulfilled"])


def _scalar_step(trainer, model, inputs):
    rewards = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        position_ids=inputs["position_ids"],
        use_cache=False,
    ).logits[:, 0]
    return scalar_fulfilment_loss(rewards, inputs["fulfilled"])


# form → (forward + loss). A new RM form is one function and one entry here.
RM_STEPS = {"yes_no": _yes_no_step, "scalar_head": _scalar_step}


class _SavesRMForm:
    """Writes posttrain_rm.json (form, template) beside every saved model so scoring knows how to read it."""

    def _save(self, output_dir=None, state_dict=None):
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            save_rm_config(output_dir or self.args.output_dir, form=self._rm_form, template=self._rm_template)


class RLBFFTrainer(CheckpointMixin, NonFiniteGuardMixin, _SavesRMForm, MetricsMixin, Trainer):
    """Trains a Yes/No-token or scalar-head principle RM on tokenized principle records."""

    _tag_names = ["posttrain", "rlbff"]

    def __init__(
        self,
        model,
        args: RLBFFConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        peft_config=None,
        data_collator=None,
        callbacks=None,
        optimizers=(None, None),
    ):
        if args.form not in RM_STEPS:
            raise ValueError(
                f"RLBFFTrainer trains {sorted(RM_STEPS)}; use BradleyTerryTrainer for {args.form}"
            )
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        self.yes_id, self.no_id = (
            yes_no_token_ids(processing_class) if args.form == "yes_no" else (None, None)
        )
        self._rm_form, self._rm_template = args.form, args.template
        pad = processing_class.pad_token_id
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator or LeftPadCollator(pad_token_id=pad),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        self.model_accepts_loss_kwargs = False
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.batch_by_context and dataset is not None:
            ids = [row["context_id"] for row in dataset]
            return ContextGroupedSampler(ids, seed=self.args.data_seed or self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, metrics = RM_STEPS[self.args.form](self, model, inputs)
        self.record_metrics("train" if model.training else "eval", metrics)
        return (loss, metrics) if return_outputs else loss


class BradleyTerryTrainer(CheckpointMixin, NonFiniteGuardMixin, _SavesRMForm, RewardTrainer):
    """TRL's RewardTrainer (−log σ(r⁺ − r⁻)), unchanged but for saving the RM form."""

    _rm_form, _rm_template = "bradley_terry", ""


def reward_config_from(args: RLBFFConfig):
    """TRL's RewardConfig carrying the same TrainingArguments as ``args``."""
    import dataclasses

    from transformers import TrainingArguments
    from trl import RewardConfig

    # from transformers 5.23 the gradient_* names are deprecated aliases of activation_*
    skip = (
        set()
        if checkpointing_field() == "gradient_checkpointing"
        else {"gradient_checkpointing", "gradient_checkpointing_kwargs"}
    )
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainingArguments)
        if f.init and f.name not in skip
    }
    values["accelerator_config"] = args.accelerator_config.to_dict() if args.accelerator_config else None
    config = RewardConfig(**values, max_length=args.max_length, disable_dropout=True)
    config.max_nonfinite_steps = args.max_nonfinite_steps  # read by NonFiniteGuardMixin
    return config

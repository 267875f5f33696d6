"""Configuration of the CPL trainer (Hejna et al., "Contrastive Preference Learning", ICLR 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

from posttrain.data import MAX_LENGTH, MAX_PROMPT_LENGTH
from posttrain.errors import ConfigFieldError
from posttrain.trainers.guards import GuardArguments


@dataclass
class CPLConfig(TrainingArguments, GuardArguments):
    """TrainingArguments plus CPL's hyperparameters. Defaults are the paper's (Table 5 / official code).

    In a recipe the CPL fields go in the ``cpl:`` section, the TrainingArguments in ``training:``;
    ``max_length``/``max_prompt_length`` come from ``data:`` and ``gradient_checkpointing`` from ``model:``.
    """

    alpha: float = field(
        default=0.1,
        metadata={"help": "Temperature α: segment score S = α·Σ_t γ^t log π(y_t|x, y_<t). Paper: 0.1."},
    )
    bias: float = field(
        default=0.5,
        metadata={
            "help": "Conservative bias λ ∈ (0, 1]: loss = −log σ(S⁺ − λ·S⁻). λ<1 favours raising the "
            "preferred segment over lowering the other. Paper: 0.5."
        },
    )
    gamma: float = field(
        default=1.0, metadata={"help": "Discount γ ∈ (0, 1] over response tokens (paper: 1, no discount)."}
    )
    length_normalize: bool = field(
        default=False,
        metadata={
            "help": "Average token log-probs instead of summing them (S = α·mean). Sums grow with length, so "
            "with λ<1 long responses push the logit α(λS⁻ − S⁺) deep into softplus's linear part, where "
            "every pair gets the same gradient whatever its margin. Off by default (the paper sums); turn "
            "it on for responses longer than ~100 tokens and raise alpha (≈1–2)."
        },
    )
    bc_weight: float = field(
        default=0.0,
        metadata={"help": "Weight w of the behaviour-cloning NLL added to the loss (CPL-BC). 0 = off."},
    )
    bc_target: Literal["chosen", "all"] = field(
        default="chosen",
        metadata={"help": "Tokens the BC NLL covers: the best response of each record, or every response."},
    )
    bc_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Optimizer steps of pure BC (NLL on chosen responses) before CPL starts, at the constant "
            "learning_rate; then the optimizer state restarts and the configured LR schedule begins, as in "
            "the official code. 0 = no warm-up."
        },
    )
    kl_reference: bool = field(
        default=False,
        metadata={
            "help": "CPL-KL variant: score log π − log π_ref against a frozen reference (with bias=1 and no BC "
            "this is DPO). Costs a second model; off by default, as in the paper."
        },
    )
    kl_reference_weights: Literal["after_bc_warmup", "initial"] = field(
        default="after_bc_warmup",
        metadata={
            "help": "CPL-KL's reference: the weights at the end of the BC warm-up (the official code, "
            "jhejna/cpl cpl_kl.py) or the initial model. The same when bc_warmup_steps is 0. With LoRA the "
            "reference after a warm-up is a full copy of the model (the initial one is the base, adapter "
            "off); not available under DeepSpeed ZeRO-3."
        },
    )
    max_length: int = field(
        default=MAX_LENGTH,
        metadata={
            "help": f"Max tokens of prompt + response. In a recipe: data.max_length (default {MAX_LENGTH})."
        },
    )
    max_prompt_length: int = field(
        default=MAX_PROMPT_LENGTH,
        metadata={
            "help": "Prompts longer than this keep their last max_prompt_length tokens. In a recipe: "
            f"data.max_prompt_length (default {MAX_PROMPT_LENGTH})."
        },
    )

    def __post_init__(self):
        if self.alpha <= 0:
            raise ConfigFieldError("alpha", f"must be > 0, got {self.alpha}")
        if not 0 < self.bias <= 1:
            raise ConfigFieldError("bias", f"must be in (0, 1], got {self.bias}")
        if not 0 < self.gamma <= 1:
            raise ConfigFieldError("gamma", f"must be in (0, 1], got {self.gamma}")
        if self.bc_weight < 0:
            raise ConfigFieldError("bc_weight", f"must be >= 0, got {self.bc_weight}")
        if self.bc_warmup_steps < 0:
            raise ConfigFieldError("bc_warmup_steps", f"must be >= 0, got {self.bc_warmup_steps}")
        if self.max_prompt_length >= self.max_length:
            raise ConfigFieldError("max_prompt_length", "must be smaller than max_length")
        if self.learning_rate <= 0:
            raise ConfigFieldError("learning_rate", f"must be > 0, got {self.learning_rate}")
        # The collator emits extra columns (pair indices, groups) the model's forward does not name.
        self.remove_unused_columns = False
        super().__post_init__()
        if self.bc_warmup_steps and self.max_steps > 0 and self.bc_warmup_steps >= self.max_steps:
            raise ConfigFieldError("bc_warmup_steps", f"must be smaller than max_steps ({self.max_steps})")

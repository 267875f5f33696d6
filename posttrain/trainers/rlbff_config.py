"""Configuration of the RLBFF principle reward-model trainer (arXiv 2509.21319)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

from posttrain.data import MAX_LENGTH, MAX_PROMPT_LENGTH
from posttrain.data.principle import DEFAULT_TEMPLATE
from posttrain.errors import ConfigFieldError
from posttrain.trainers.guards import GuardArguments


@dataclass
class RLBFFConfig(TrainingArguments, GuardArguments):
    """TrainingArguments plus the RM form and its data handling. In a recipe these go under ``rlbff:``;
    ``max_length``/``max_prompt_length`` come from ``data:`` and ``gradient_checkpointing`` from ``model:``."""

    form: Literal["yes_no", "scalar_head", "bradley_terry"] = field(
        default="yes_no",
        metadata={
            "help": "yes_no: the paper's RM, reward = logit(Yes) − logit(No) after an evaluation question; "
            "scalar_head: a sequence-classification head on the same input, BCE on fulfilment; "
            "bradley_terry: the baseline, TRL's RewardTrainer on preference pairs (no principle)."
        },
    )
    template: str = field(
        default=DEFAULT_TEMPLATE,
        metadata={"help": "The evaluation question appended as a user turn; must contain {principle}."},
    )
    partially_as: Literal["Yes", "No"] | None = field(
        default=None,
        metadata={
            "help": "Map 'Partially' labels to Yes or No; None drops them (the paper's choice), counted."
        },
    )
    keep_helpfulness: bool = field(
        default=False,
        metadata={
            "help": "Keep records of the catch-all principle 'helpfulness'; False drops them (the paper's "
            "HelpSteer3-Principle filtering), counted in the data report."
        },
    )
    max_length: int = field(
        default=MAX_LENGTH,
        metadata={
            "help": "Records whose rendered RM input is longer are dropped (counted). In a recipe: "
            f"data.max_length (default {MAX_LENGTH})."
        },
    )
    batch_by_context: bool = field(
        default=False,
        metadata={
            "help": "Keep the records of one context (same responses, different principles) in the same "
            "batch, contexts shuffled each epoch, instead of shuffling records. Not in the paper; helps a "
            "small RM learn to read the principle when a context is labelled under several principles."
        },
    )
    max_prompt_length: int = field(
        default=MAX_PROMPT_LENGTH,
        metadata={
            "help": "Bradley–Terry pairs only: prompts are left-truncated to this length. In a recipe: "
            f"data.max_prompt_length (default {MAX_PROMPT_LENGTH})."
        },
    )

    def __post_init__(self):
        if "{principle}" not in self.template:
            raise ConfigFieldError("template", "must contain '{principle}'")
        if self.learning_rate <= 0:
            raise ConfigFieldError("learning_rate", f"must be > 0, got {self.learning_rate}")
        self.remove_unused_columns = False
        super().__post_init__()

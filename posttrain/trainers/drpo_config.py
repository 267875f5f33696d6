"""Configuration of the DRPO trainer (arXiv 2510.04474): TRL's GRPOConfig plus the DRPO objective.

Defaults follow the paper's setup for DeepSeek-R1-Distill-Qwen-1.5B: λ = 0.1, τ = 10, β = 1e3, δ = 1e-4,
learning rate 2e-6, 8 answers per prompt, temperature 0.6, responses up to 8192 tokens, no reference-model
KL and no entropy bonus. Everything else (vLLM rollouts, generation and batching knobs) is GRPOConfig's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trl import GRPOConfig

from posttrain.methods import ConfigFieldError
from posttrain.trainers.guards import GuardArguments

# Objectives whose loss is a function of whole groups (each micro-batch must hold complete groups).
GROUPWISE_OBJECTIVES = ("drpo", "disco")


@dataclass
class DRPOConfig(GRPOConfig, GuardArguments):
    """GRPOConfig plus the DRPO objective. In a recipe these go under ``drpo:``."""

    objective: Literal["drpo", "disco", "grpo", "grpo_lp"] = field(
        default="drpo",
        metadata={
            "help": "drpo: the paper's decoupled objective; disco: uniform weights on correct answers (λ → ∞); "
            "grpo: TRL's GRPO loss on the rewards as given; grpo_lp: GRPO with a length penalty on correct "
            "answers (Arora & Zanette 2025), the coupled baseline DRPO improves on."
        },
    )
    length_lambda: float = field(
        default=0.1,
        metadata={
            "help": "λ: temperature of the length weights over correct answers; smaller = shorter favoured."
        },
    )
    tau: float = field(
        default=10.0, metadata={"help": "τ: temperature of the log-mean-exp over incorrect answers' scores."}
    )
    length_reward: Literal["linear", "concave", "cosine"] = field(
        default="linear",
        metadata={
            "help": "r_l(o): 1 − |o|/C, 1 − (|o|/C)², or 0.5 + 0.5·cos(π|o|/C); C = max_completion_length."
        },
    )
    all_correct: Literal["zero", "reweight"] = field(
        default="zero",
        metadata={
            "help": "All-correct groups: 'zero' contributes nothing (the paper); 'reweight' (opt-in) shifts "
            "mass toward shorter correct answers with zero net push, J = Σ (ω_i − 1/K) s_i."
        },
    )
    trust_region_beta: float = field(
        default=1e3, metadata={"help": "β of the KL hinge penalty (β/2)·[KL(π_old‖π_θ) − δ]_+²."}
    )
    trust_region_delta: float = field(default=1e-4, metadata={"help": "δ: the trust-region radius."})
    length_penalty_alpha: float = field(
        default=0.2, metadata={"help": "grpo_lp only: α in r = correct · (1 − α·σ(standardised length))."}
    )
    rewards: list[str] = field(
        default_factory=lambda: ["math_correctness"],
        metadata={
            "help": "Reward functions (TRL signature): a name from posttrain.rewards.REWARDS, 'module:function', "
            "or 'principle_rm=PATH' for an RLBFF principle RM. Weights: reward_weights."
        },
    )
    correct_reward: str | None = field(
        default=None,
        metadata={
            "help": "drpo/disco/grpo_lp: the reward (by name) that decides correctness; None = the weighted "
            "sum of all rewards. An answer is correct when that value is > correct_threshold."
        },
    )
    correct_threshold: float = field(default=0.5, metadata={"help": "Correct when reward > this."})
    prompt_suffix: str | None = field(
        default=None,
        metadata={
            "help": "Appended to each problem; None = the paper's 'Let's think step by step …\\boxed{}.'"
        },
    )
    # Paper defaults that differ from GRPOConfig's.
    learning_rate: float = field(default=2e-6, metadata={"help": "Paper: 2e-6 (1.5B), 1e-6 (7B)."})
    temperature: float = field(
        default=0.6, metadata={"help": "Sampling temperature (also divides the logits)."}
    )
    max_completion_length: int | None = field(default=8192, metadata={"help": "C: maximum response length."})
    bf16: bool | None = field(default=False, metadata={"help": "Mixed precision; set true on GPUs."})
    log_completions: bool = field(default=False, metadata={"help": "Print sample completions at log steps."})

    def __post_init__(self):
        if self.length_lambda <= 0:
            raise ConfigFieldError("length_lambda", f"must be > 0, got {self.length_lambda}")
        if self.tau <= 0:
            raise ConfigFieldError("tau", f"must be > 0, got {self.tau}")
        if self.trust_region_beta < 0 or self.trust_region_delta < 0:
            raise ConfigFieldError("trust_region_beta", "β and δ must be ≥ 0")
        if not self.rewards:
            raise ConfigFieldError("rewards", "name at least one reward function")
        if self.max_completion_length is None or self.max_completion_length <= 0:
            raise ConfigFieldError("max_completion_length", "must be a positive number of tokens")
        k = self.num_generations
        if self.objective in GROUPWISE_OBJECTIVES:
            # The objective couples a group's answers, so a micro-batch must hold whole groups.
            if self.per_device_train_batch_size % k:
                raise ConfigFieldError(
                    "per_device_train_batch_size",
                    f"must be a multiple of num_generations ({k}) for objective '{self.objective}' "
                    f"(each micro-batch holds whole groups), got {self.per_device_train_batch_size}",
                )
            if self.mask_truncated_completions:
                raise ConfigFieldError(
                    "mask_truncated_completions",
                    f"not supported with objective '{self.objective}': a fully masked answer has no score",
                )
        self.remove_unused_columns = False
        super().__post_init__()
        every = self.rollout_boundary_steps
        if self.save_strategy == "steps" and self.save_steps >= 1 and self.save_steps % every:
            raise ConfigFieldError(
                "save_steps",
                f"must be a multiple of {every}: a checkpoint holds no buffered rollouts, so it is taken "
                f"between rollouts (every {every} optimizer steps with steps_per_generation "
                f"{self.steps_per_generation} × num_iterations {self.num_iterations} and "
                f"gradient_accumulation_steps {self.gradient_accumulation_steps}), got {self.save_steps}",
            )
        if self.objective in GROUPWISE_OBJECTIVES and self.eval_strategy != "no":
            k_eval = self.num_generations_eval or k
            if self.per_device_eval_batch_size % k_eval:
                raise ConfigFieldError(
                    "per_device_eval_batch_size",
                    f"must be a multiple of num_generations_eval ({k_eval}) when evaluating, "
                    f"got {self.per_device_eval_batch_size}",
                )

    @property
    def rollout_boundary_steps(self) -> int:
        """Optimizer steps between points where no generated rollout is buffered (TRL generates every
        steps_per_generation × num_iterations micro-steps): the steps a checkpoint can be taken at."""
        import math

        every = self.steps_per_generation * self.num_iterations
        return every // math.gcd(every, self.gradient_accumulation_steps)

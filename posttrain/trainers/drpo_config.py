"""Configuration of the DRPO trainer (arXiv 2510.04474): TRL's GRPOConfig plus the DRPO objective.

Defaults follow the paper's setup for DeepSeek-R1-Distill-Qwen-1.5B and its official config
(Optimization-AI/DRPO ``scripts/train/run_drpo_1.5b_8k.sh`` on verl): λ = 0.1, τ = 10, β = 1e3, δ = 1e-4,
learning rate 2e-6 held constant, AdamW weight decay 0.01 (verl's default), 8 answers per prompt,
temperature 0.6, responses up to 8192 tokens, no reference-model KL and no entropy bonus, and 4 policy
updates per rollout (``train_batch_size`` 128 prompts, ``ppo_mini_batch_size`` 32, ``ppo_epochs`` 1): with
one update per rollout π_old = π_θ and the trust region never acts. The baselines ``grpo``/``grpo_lp`` use
TRL's ``loss_type="grpo"`` (token mean per sequence, then mean over sequences), the paper's GRPO.
Everything else (vLLM rollouts, generation and batching knobs) is GRPOConfig's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from trl import GRPOConfig

from posttrain.errors import ConfigFieldError
from posttrain.rewards.registry import is_custom_reward
from posttrain.trainers.guards import GuardArguments

# Objectives whose loss is a function of whole groups (each micro-batch must hold complete groups).
GROUPWISE_OBJECTIVES = ("drpo", "disco")

logger = logging.getLogger(__name__)


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
    allow_custom_rewards: bool = field(
        default=False,
        metadata={
            "help": "Allow 'module:function' rewards: importing the module runs its code, so a recipe must "
            "opt in explicitly."
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
    updates_per_rollout: int = field(
        default=4,
        metadata={
            "help": "Optimizer steps per rollout: steps_per_generation = updates_per_rollout × "
            "gradient_accumulation_steps, unless steps_per_generation or generation_batch_size is set. The "
            "paper: 4 (128 prompts per rollout, mini-batches of 32). 1 = on-policy: π_old = π_θ and the trust "
            "region never acts."
        },
    )
    vllm_cpu_kv_cache_gb: int | None = field(
        default=None,
        metadata={
            "help": "use_vllm on a CPU: GiB of memory for vLLM's KV cache (sets VLLM_CPU_KVCACHE_SPACE); None = "
            "vLLM sizes it as vllm_gpu_memory_utilization × the machine's memory."
        },
    )
    # Paper defaults that differ from GRPOConfig's.
    learning_rate: float = field(default=2e-6, metadata={"help": "Paper: 2e-6 (1.5B), 1e-6 (7B)."})
    lr_scheduler_type: str = field(
        default="constant",
        metadata={"help": "Constant, as verl's default (warmup_style constant) in the paper."},
    )
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay; 0.01 as verl's actor optimizer."}
    )
    loss_type: str = field(
        default="grpo",
        metadata={
            "help": "grpo/grpo_lp baselines only: TRL's loss_type; 'grpo' (token mean per sequence, then mean over "
            "sequences) is the DRPO paper's GRPO; TRL's own default is 'dapo'. drpo/disco ignore it."
        },
    )
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
        custom = [spec for spec in self.rewards if is_custom_reward(spec)]
        if custom and not self.allow_custom_rewards:
            raise ConfigFieldError(
                "rewards",
                f"'{custom[0]}' imports and runs the module '{custom[0].partition(':')[0]}'; set "
                "drpo.allow_custom_rewards: true to allow rewards from your own modules",
            )
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
        if self.objective in GROUPWISE_OBJECTIVES and self.beta != 0:
            raise ConfigFieldError(
                "beta",
                f"a reference-model KL is not implemented for objective '{self.objective}' (the paper uses none; "
                f"its trust region is trust_region_beta/delta), got {self.beta}",
            )
        if self.updates_per_rollout < 1:
            raise ConfigFieldError("updates_per_rollout", f"must be ≥ 1, got {self.updates_per_rollout}")
        if self.steps_per_generation is None and self.generation_batch_size is None:
            self.steps_per_generation = self.updates_per_rollout * self.gradient_accumulation_steps
        self.remove_unused_columns = False
        super().__post_init__()
        if (
            self.objective in GROUPWISE_OBJECTIVES
            and self.trust_region_beta > 0
            and not self.leaves_old_policy
        ):
            logger.warning(
                "DRPO: one policy update per rollout (steps_per_generation %d × num_iterations %d divides "
                "gradient_accumulation_steps %d), so π_old = π_θ, KL = 0 and the trust region never acts; "
                "the paper takes 4 updates per rollout (updates_per_rollout: 4)",
                self.steps_per_generation,
                self.num_iterations,
                self.gradient_accumulation_steps,
            )
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
    def leaves_old_policy(self) -> bool:
        """Whether the policy can move between a rollout and its last update, i.e. a rollout spans more than
        one optimizer step; otherwise every micro-step is on-policy (TRL then computes no π_old at all)."""
        return self.gradient_accumulation_steps % (self.steps_per_generation * self.num_iterations) != 0

    @property
    def rollout_boundary_steps(self) -> int:
        """Optimizer steps between points where no generated rollout is buffered (TRL generates every
        steps_per_generation × num_iterations micro-steps): the steps a checkpoint can be taken at."""
        import math

        every = self.steps_per_generation * self.num_iterations
        return every // math.gcd(every, self.gradient_accumulation_steps)

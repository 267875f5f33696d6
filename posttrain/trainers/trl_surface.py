"""Every private (or undocumented) TRL / transformers member posttrain relies on, in one list.

posttrain's trainers subclass TRL's and transformers' trainers and override or call some of their private
methods, read attributes their ``__init__`` sets, and rely on the keys of the batch GRPOTrainer builds. None
of that is TRL's public API, so a TRL release may rename or change any of it without notice. This module
lists all of it (:data:`MEMBERS`), and the trainers import TRL's internal helpers through the functions
below rather than from TRL's internal modules. ``tests/test_trl_surface.py`` checks every entry against the
installed TRL and names the member that changed; ``python -m posttrain.trainers.trl_surface`` does the same
from the command line.

Lifting the ``trl`` bound in ``pyproject.toml``: install the new TRL, run the check; for each member it names,
adapt the posttrain code listed in ``used_by`` (and this list), then run the DRPO / CPL / RLBFF trainer tests
and raise the bound.

Kinds of entries (:class:`Member`):

- ``override``: posttrain defines a method of this name that TRL calls; TRL's parameters must be exactly
  ``params`` (after ``self``), or TRL would call the override with arguments it does not take.
- ``call``: posttrain calls it (``super()`` or directly) with positional arguments; its leading parameters
  must be ``params``.
- ``attribute``: posttrain reads (or resets) ``self.<name>``; some class in the owner's MRO must assign it.
- ``batch key``: a key of the dict ``GRPOTrainer._generate_and_score_completions`` returns, read by DRPO's
  loss; the method's source must name it.

This module imports nothing from posttrain but the leaf :mod:`posttrain.log` (any layer may use it), and TRL
only when a helper is called.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MEMBERS",
    "Member",
    "check",
    "prepare_deepspeed",
    "split_tensor_dict",
    "vllm_generation_class",
    "vllm_serve_script",
]


@dataclass(frozen=True)
class Member:
    owner: str  # "module:Class" or "module" (a module-level function or class)
    name: str
    kind: str  # override | call | attribute | batch key
    params: tuple[str, ...] = ()
    used_by: str = ""

    @property
    def label(self) -> str:
        return f"{self.owner}.{self.name}".replace(":", ".")


_GRPO = "trl:GRPOTrainer"
_REWARD = "trl:RewardTrainer"
_TRAINER = "transformers:Trainer"
_VLLM_GEN = "trl.generation.vllm_generation:VLLMGeneration"
_DRPO = "posttrain.trainers.drpo_trainer"

MEMBERS: tuple[Member, ...] = (
    # -- GRPOTrainer: DRPO's rollouts, micro-batches and loss --------------------------------------------
    Member(
        _GRPO,
        "_calculate_rewards",
        "override",
        ("inputs", "prompts", "completions", "completion_ids_list"),
        _DRPO,
    ),
    Member(_GRPO, "_generate_and_score_completions", "override", ("inputs",), _DRPO),
    Member(_GRPO, "_prepare_inputs", "override", ("generation_batch",), _DRPO),
    Member(_GRPO, "_compute_loss", "override", ("model", "inputs"), _DRPO),
    Member(
        _GRPO,
        "_get_per_token_logps_and_entropies",
        "call",
        ("model", "input_ids", "attention_mask", "logits_to_keep"),
        _DRPO + " (unpacks 3 values: logps, entropies, aux)",
    ),
    Member(_GRPO, "_load_optimizer_and_scheduler", "override", ("checkpoint",), _DRPO),
    Member(_GRPO, "_step", "attribute", used_by=_DRPO + " (micro-step counter, reset on resume)"),
    Member(_GRPO, "_buffered_inputs", "attribute", used_by=_DRPO + " (the rollout split into micro-batches)"),
    Member(_GRPO, "_metrics", "attribute", used_by=_DRPO),
    Member(_GRPO, "_tokenizer", "attribute", used_by=_DRPO + " (pad token of the truncation flags)"),
    Member(_GRPO, "eos_token_ids", "attribute", used_by=_DRPO),
    Member(_GRPO, "reward_func_names", "attribute", used_by=_DRPO),
    Member(_GRPO, "reward_weights", "attribute", used_by=_DRPO),
    Member(_GRPO, "num_generations", "attribute", used_by=_DRPO),
    Member(_GRPO, "num_generations_eval", "attribute", used_by=_DRPO),
    Member(_GRPO, "max_completion_length", "attribute", used_by=_DRPO),
    Member(_GRPO, "current_gradient_accumulation_steps", "attribute", used_by=_DRPO),
    Member(_GRPO, "use_vllm", "attribute", used_by=_DRPO),
    Member(_GRPO, "vllm_generation", "attribute", used_by=_DRPO + " (its class swapped for the CPU sync)"),
    *(
        Member(_GRPO, key, "batch key", used_by=_DRPO + "._compute_loss")
        for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages")
    ),
    Member(_GRPO, "old_per_token_logps", "batch key", used_by=_DRPO + "._compute_loss (π_old)"),
    # -- TRL helpers in internal modules -----------------------------------------------------------------
    Member("trl.trainer.utils", "split_tensor_dict", "call", ("tensor_dict", "num_chunks"), _DRPO),
    Member(
        "trl.models.utils",
        "prepare_deepspeed",
        "call",
        ("model", "accelerator"),
        "posttrain.trainers.cpl_trainer",
    ),
    Member(
        "trl.scripts.vllm_serve",
        "build_command",
        "call",
        ("script_args", "extra_args"),
        "posttrain.vllm_serve",
    ),
    Member(
        "trl.scripts.vllm_serve", "ScriptArguments", "call", (), "posttrain.vllm_serve (keyword arguments)"
    ),
    # -- VLLMGeneration: the CPU weight sync ---------------------------------------------------------------
    Member(_VLLM_GEN, "sync_weights", "override", (), "posttrain.trainers.vllm_rollouts"),
    Member(_VLLM_GEN, "_iter_named_params", "call", (), "posttrain.trainers.vllm_rollouts"),
    Member(_VLLM_GEN, "mode", "attribute", used_by="posttrain.trainers.vllm_rollouts"),
    Member(_VLLM_GEN, "llm", "attribute", used_by="posttrain.trainers.vllm_rollouts"),
    Member(_VLLM_GEN, "accelerator", "attribute", used_by="posttrain.trainers.vllm_rollouts"),
    # -- RewardTrainer: the Bradley-Terry RM ---------------------------------------------------------------
    Member(_REWARD, "_save", "override", ("output_dir", "state_dict"), "posttrain.trainers.rlbff_trainer"),
    # -- transformers.Trainer (under every posttrain trainer, TRL's included) ----------------------------------
    Member(_TRAINER, "_save", "override", ("output_dir", "state_dict"), "posttrain.trainers.rlbff_trainer"),
    Member(
        _TRAINER, "_get_train_sampler", "override", ("train_dataset",), "posttrain.trainers.rlbff_trainer"
    ),
    Member(
        _TRAINER,
        "_load_optimizer_and_scheduler",
        "override",
        ("checkpoint",),
        "posttrain.trainers.cpl_trainer",
    ),
    Member(
        _TRAINER,
        "_save_optimizer_and_scheduler",
        "override",
        ("output_dir",),
        "posttrain.trainers.cpl_trainer",
    ),
    Member(_TRAINER, "_created_lr_scheduler", "attribute", used_by="posttrain.trainers.cpl_trainer"),
    Member(_TRAINER, "_prepare_inputs", "call", ("inputs",), "posttrain.trainers.utils.MetricsMixin"),
    Member(
        _TRAINER,
        "_init_training_state",
        "override",
        ("max_steps", "num_update_steps_per_epoch", "num_train_epochs", "resume_from_checkpoint", "trial"),
        "posttrain.checkpoints.StopAtMaxSteps (passes *args through; reads state.global_step after it)",
    ),
    Member(
        _TRAINER,
        "_run_epoch",
        "override",
        (
            "model",
            "epoch",
            "train_dataloader",
            "steps_in_epoch",
            "num_update_steps_per_epoch",
            "trial",
            "ignore_keys_for_eval",
            "start_time",
            "resume_from_checkpoint",
            "epochs_trained",
            "steps_trained_in_current_epoch",
        ),
        "posttrain.checkpoints.StopAtMaxSteps (passes *args through)",
    ),
    Member(
        _TRAINER, "_save_checkpoint", "override", ("model", "trial"), "posttrain.checkpoints.CheckpointMixin"
    ),
    Member(_TRAINER, "_get_output_dir", "call", ("trial",), "posttrain.checkpoints.CheckpointMixin"),
)


# -- the helpers the trainers use (TRL imported when called) ----------------------------------------------


def split_tensor_dict(tensor_dict: dict, num_chunks: int) -> list[dict]:
    """``trl.trainer.utils.split_tensor_dict``: a batch split into ``num_chunks`` micro-batches of rows."""
    from trl.trainer.utils import split_tensor_dict as split

    return split(tensor_dict, num_chunks)


def prepare_deepspeed(model, accelerator):
    """``trl.models.utils.prepare_deepspeed``: a frozen reference model wrapped for the run's DeepSpeed."""
    from trl.models.utils import prepare_deepspeed as prepare

    return prepare(model, accelerator)


def vllm_generation_class() -> type:
    """``trl.generation.vllm_generation.VLLMGeneration`` (imports vLLM's side of TRL: call only with vLLM)."""
    from trl.generation.vllm_generation import VLLMGeneration

    return VLLMGeneration


def vllm_serve_script() -> tuple[type, Any]:
    """``trl.scripts.vllm_serve``'s ``(ScriptArguments, build_command)``: what ``trl vllm-serve`` runs."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    return ScriptArguments, build_command


# -- the check ----------------------------------------------------------------------------------------------


def _owner(member: Member) -> Any:
    module, _, cls = member.owner.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, cls) if cls else obj


def _sources(cls: type) -> str:
    parts = []
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            parts.append(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
    return "\n".join(parts)


def _parameters(obj) -> list[str]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    names = list(inspect.signature(target).parameters)
    return names[1:] if names and names[0] == "self" else names


def problem(member: Member) -> str | None:
    """What no longer holds for ``member`` on the installed TRL / transformers, or None."""
    try:
        owner = _owner(member)
    except (ImportError, AttributeError) as exc:
        return f"{member.owner}: cannot be imported ({exc})"
    if member.kind == "attribute":
        if not re.search(rf"self\.{re.escape(member.name)}\s*(:[^=\n]*)?=", _sources(owner)):
            return f"{member.label}: no class in {member.owner}'s MRO assigns self.{member.name}"
        return None
    if member.kind == "batch key":
        source = inspect.getsource(owner._generate_and_score_completions)
        if f'"{member.name}"' not in source:
            return f"{member.label}: _generate_and_score_completions no longer builds the key '{member.name}'"
        return None
    obj = getattr(owner, member.name, None)
    if obj is None:
        return f"{member.label}: missing"
    if member.kind == "call" and inspect.isclass(obj) and not member.params:
        return None  # a class posttrain builds with keyword arguments: checked where it is built
    params = _parameters(obj)
    expected = list(member.params)
    if member.kind == "override" and params != expected:
        return f"{member.label}: parameters are now ({', '.join(params)}), posttrain overrides ({', '.join(expected)})"
    if member.kind == "call" and params[: len(expected)] != expected:
        return f"{member.label}: parameters are now ({', '.join(params)}), posttrain calls ({', '.join(expected)})"
    return None


def check(members: tuple[Member, ...] = MEMBERS) -> list[str]:
    """Every problem with the listed members, one line each (empty: this TRL is compatible)."""
    return [p for p in map(problem, members) if p is not None]


if __name__ == "__main__":
    import trl

    from posttrain import log

    problems = check()
    for line in problems:
        log.error(line)
    log.emit(
        f"trl {trl.__version__}: {len(MEMBERS) - len(problems)}/{len(MEMBERS)} listed members as posttrain expects"
    )
    raise SystemExit(1 if problems else 0)

"""TRL conventions: what a TRL user's flat ``trl <cmd> --config x.yaml`` file becomes as a posttrain recipe.

A TRL config puts everything at the top level (``model_name_or_path``, ``dataset_name``, trainer arguments);
a recipe nests them (``model:``, ``data:``, ``training:``) under a ``method``. :func:`trl_config_hint`
recognises such a file and spells out the recipe it maps to, for the error that names the missing method.

This is about TRL's *config files*, for users coming from TRL. The TRL *code* posttrain depends on (private
trainer members it overrides) is listed in :mod:`posttrain.trainers.trl_surface`.
"""

from __future__ import annotations

from typing import Any

# TRL's script arguments (ModelConfig / ScriptArguments) → the recipe key they map to
_TRL_KEYS = {
    "model_name_or_path": "model.name_or_path",
    "model_revision": "model.revision",
    "torch_dtype": "model.dtype",
    "dtype": "model.dtype",
    "attn_implementation": "model.attn_implementation",
    "trust_remote_code": "model.trust_remote_code",
    "use_peft": "model.lora (a section: {r, alpha, dropout, target_modules})",
    "lora_r": "model.lora.r",
    "lora_alpha": "model.lora.alpha",
    "lora_dropout": "model.lora.dropout",
    "lora_target_modules": "model.lora.target_modules",
    "dataset_name": "data.train.hub",
    "dataset_config": "data.train.name",
    "dataset_train_split": "data.train.split",
    "dataset_test_split": "data.eval.split (with data.eval.hub)",
    "max_length": "data.max_length",
    "max_prompt_length": "data.max_prompt_length",
    "gradient_checkpointing": "model.gradient_checkpointing",
}
# the TRL command a posttrain method stands closest to
METHOD_FOR = (
    "trl dpo → method: cpl (with cpl.bias: 1 and cpl.kl_reference: true, CPL is DPO)",
    "trl reward → method: rlbff with rlbff.form: bradley_terry",
    "trl grpo → method: drpo with drpo.objective: grpo (drpo for the DRPO objective)",
)


def looks_like_trl_config(data: dict[str, Any]) -> bool:
    return "method" not in data and any(key in data for key in ("model_name_or_path", "dataset_name"))


def trl_config_hint(data: dict[str, Any]) -> str | None:
    """One line telling a TRL user how to write their flat config as a recipe; None if it is not one."""
    if not looks_like_trl_config(data):
        return None
    mapped = [f"{key} → {_TRL_KEYS[key]}" for key in data if key in _TRL_KEYS]
    rest = [key for key in data if key not in _TRL_KEYS and key != "output_dir"]
    parts = [
        "this looks like a TRL config (trl <command> --config): a posttrain recipe nests it under a method",
        "; ".join(METHOD_FOR),
        "; ".join(mapped),
    ]
    if rest:
        parts.append(
            f"the trainer arguments ({', '.join(rest[:6])}{', ...' if len(rest) > 6 else ''}) go under training:"
        )
    parts.append("output_dir stays at the top; see `posttrain recipes` and recipes/*/ for complete examples")
    return "; ".join(p for p in parts if p)

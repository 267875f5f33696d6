"""YAML recipes: one file ties model, data, method hyperparameters and trainer arguments together.

A recipe looks like::

    # Launch: accelerate launch -m posttrain train recipes/cpl/quickstart.yaml
    method: cpl
    description: CPL on the embedded SmolLM2 with the bundled demo pairs
    output_dir: outputs/cpl-quickstart
    model: {name_or_path: "embedded:smollm2-135m-instruct", dtype: float32}
    data:
      train: {path: data/demo/preferences.jsonl, format: pairs}
      max_length: 256
    cpl: {alpha: 0.1, bias: 0.5}          # the method's section, named after the method
    training: {learning_rate: 1.0e-5, max_steps: 50}   # anything the method's TrainingArguments accept

Everything is validated before any model loads: an unknown key is named with the nearest valid key, a
wrong type or range names its YAML path, a missing file is named. All of these raise :class:`UserError`.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from posttrain.data import MAX_LENGTH, MAX_PROMPT_LENGTH
from posttrain.errors import UserError, did_you_mean
from posttrain.models import EMBEDDED_MODELS, check_model_source
from posttrain.paths import find_file, recipes_dir
from posttrain.tracking import install_hint
from posttrain.trl_compat import trl_config_hint
from posttrain.yaml_file import read_yaml


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSection(_Section):
    """PEFT LoRA adapter; when present only the adapter trains."""

    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (lora_alpha).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules to adapt: 'all-linear' or a list of module names."
    )
    modules_to_save: list[str] | None = Field(None, description="Extra modules trained in full and saved.")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r).")
    save_merged: bool = Field(
        False,
        description="Also write the base model with the adapter merged into output_dir/merged, loadable "
        "without PEFT; the adapter alone is always written to output_dir.",
    )


class ModelSection(_Section):
    name_or_path: str = Field(
        description="Hub id, local directory, .gguf file, or an alias such as 'embedded:smollm2-135m-instruct'."
    )
    gguf_file: str | None = Field(None, description="GGUF file name inside name_or_path (a directory).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    tokenizer: str | None = Field(None, description="Tokenizer source when it differs from the model.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; 'auto' keeps the checkpoint's."
    )
    attn_implementation: str | None = Field(
        None, description="eager, sdpa, flash_attention_2, ...; None lets transformers choose."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub repository.")
    chat_template: str | None = Field(None, description="Jinja chat template overriding the tokenizer's.")
    lora: LoraSection | None = Field(None, description="LoRA adapter settings; omit for full fine-tuning.")


class DataSource(_Section):
    path: str | None = Field(None, description="Local .json/.jsonl/.parquet file, optionally .gz.")
    hub: str | None = Field(None, description="Hub dataset id (loaded with datasets.load_dataset).")
    name: str | None = Field(None, description="Hub dataset configuration name.")
    data_dir: str | None = Field(None, description="Sub-directory of a hub dataset (e.g. 'harmless-base').")
    split: str = Field("train", description="Hub dataset split.")
    format: Literal[
        "auto", "pairs", "hh", "ranked", "helpsteer3", "principles", "math", "gsm8k", "prompts"
    ] = Field(
        "auto",
        description="pairs: prompt/chosen/rejected (text or messages); hh: Anthropic HH transcripts; "
        "ranked: prompt/responses/scores; helpsteer3: context/response1/response2/overall_preference; "
        "principles: context/response/principle/fulfilment (RLBFF); "
        "math: problem/answer (MATH, DeepScaleR, the paper's test sets); gsm8k: question/answer ending '#### n'; "
        "prompts: prompt or context (+ columns for the rewards, e.g. principle) for RL with a learned reward; "
        "auto: detect from the first record.",
    )
    limit: int | None = Field(None, gt=0, description="Use only the first N records.")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of 'path' (local file) or 'hub' (dataset id)")
        return self


class DataSection(_Section):
    train: DataSource
    eval: DataSource | None = None
    max_length: int = Field(
        MAX_LENGTH,
        gt=1,
        description="Max tokens of prompt + response (cpl, rlbff; the method's max_length). rlbff drops longer "
        "records; cpl truncates or drops them (overlong).",
    )
    max_prompt_length: int = Field(
        MAX_PROMPT_LENGTH,
        gt=0,
        description="Prompts are left-truncated to this many tokens (cpl; rlbff's Bradley–Terry form).",
    )
    overlong: Literal["truncate", "drop"] = Field(
        "truncate", description="Records over the limits: truncate them (counted) or drop them (counted)."
    )

    @model_validator(mode="after")
    def _lengths(self):
        if self.max_prompt_length >= self.max_length:
            raise ValueError("max_prompt_length must be smaller than max_length")
        return self


class RMBenchEval(_Section):
    data: str | None = Field(
        None, description="RM-Bench folder, file or hub id; default ../shared copy or hub."
    )
    limit: int | None = Field(None, gt=0, description="First N records per domain.")
    principle: str | dict[str, str] | None = Field(
        None,
        description="One principle for all domains, or domain → principle; default: documented per domain.",
    )


class PrincipleEval(_Section):
    data: str = Field(description="Held-out principle records (JSONL).")
    limit: int | None = Field(None, gt=0, description="Use only the first N records.")


class MathEval(_Section):
    benchmarks: list[str] = Field(
        description="Benchmark names (gsm8k, math500, aime24, ...; read from data_dir) or .json/.jsonl files."
    )
    data_dir: str | None = Field(
        None, description="Folder of <benchmark>.json files; default ../shared copy."
    )
    samples: int = Field(4, gt=0, description="Samples per problem (the paper: 16).")
    limit: int | None = Field(None, gt=0, description="First N problems per benchmark.")
    max_new_tokens: int = Field(512, gt=0, description="Per response.")
    temperature: float = Field(0.6, ge=0, description="Sampling temperature (the paper: 0.6).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling (the paper: 0.95).")
    suffix: str | None = Field(None, description="Appended to each problem; default: the paper's.")


class EvaluateSection(_Section):
    """Evaluations run on the saved model after training."""

    principles: PrincipleEval | None = None
    rm_bench: RMBenchEval | None = None
    math: MathEval | None = None


class Recipe(_Section):
    method: str = Field(description="Post-training method, e.g. 'cpl'.")
    description: str = Field("", description="One line shown by `posttrain recipes`.")
    output_dir: str = Field(description="Where checkpoints, logs and the resolved recipe go.")
    model: ModelSection
    data: DataSection
    training: dict[str, Any] = Field(default_factory=dict, description="Trainer arguments.")
    evaluate: EvaluateSection | None = Field(
        None, description="Evaluations after training; each method allows those that fit what it trains."
    )
    method_args: dict[str, Any] = Field(default_factory=dict, description="The method's own section.")
    source: str | None = Field(None, exclude=True)

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe in recipe-file form (method section under its own name)."""
        out = self.model_dump(exclude={"method_args", "source"})
        training = out.pop("training")
        out[self.method] = dict(self.method_args)
        out["training"] = training
        return out


# --------------------------------------------------------------------------------------------------
# Loading and validation


def find_recipe(name: str) -> Path:
    """A recipe path, or a bundled recipe's short name (``cpl/quickstart``)."""
    for candidate in (name, f"{name}.yaml"):
        found = find_file(candidate)
        if found is not None and found.is_file():
            return found
    for candidate in (recipes_dir() / name, recipes_dir() / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise UserError(f"recipe not found: {name} (also looked in {recipes_dir()})")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; the value is parsed as YAML (``true``, ``3``, ``[a, b]``).

    YAML 1.1 reads ``1e-5`` as a string; typed fields (learning_rate, ...) still coerce it to a float.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"override '{item}' is not of the form key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
            value = raw  # YAML 1.1 reads no/yes/on/off as booleans; `eval_strategy=no` means the string

        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise UserError(f"override '{item}': '{'.'.join(parts[: i + 1])}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _format_pydantic(exc: ValidationError, where: str, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-after")]
        path = prefix + ".".join(loc)
        if err["type"] == "extra_forbidden":
            parent = _model_at(Recipe, loc[:-1]) if not prefix else None
            hint = did_you_mean(loc[-1], parent.model_fields) if parent is not None else ""
            lines.append(f"{where}: unknown key '{path}'{hint}")
        elif err["type"] == "missing":
            lines.append(f"{where}: missing required key '{path}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else ""
            lines.append(f"{where}: {path or 'recipe'}: {msg}{shown}")
    return "\n".join(lines)


def _model_at(model: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return None
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return None
    return model


def load_recipe(name: str, overrides: list[str] | None = None, *, check_files: bool = True) -> Recipe:
    """Read, override and validate a recipe. Raises :class:`UserError` on any mistake; loads no model."""
    # lazy: the methods import transformers and torch; `posttrain recipes` reads recipes without them
    from posttrain.methods import get_method, method_names
    from posttrain.methods.base import validate_dataclass_section

    path = find_recipe(name)
    where = str(path)
    data = apply_overrides(read_yaml(path), list(overrides or []))

    method_name = data.get("method")
    if not isinstance(method_name, str):
        hint = trl_config_hint(data)
        raise UserError(
            f"{where}: missing required key 'method' (one of: {', '.join(method_names())})"
            + (f"; {hint}" if hint else "")
        )
    if method_name not in method_names():
        raise UserError(
            f"{where}: method: unknown method '{method_name}'{did_you_mean(method_name, method_names())}"
            f"; available: {', '.join(method_names())}"
        )
    method = get_method(method_name)
    method_args = data.pop(method_name, None) or {}
    for other in method_names():
        if other in data:
            raise UserError(f"{where}: section '{other}' does not belong to method '{method_name}'")
    known = set(Recipe.model_fields) - {"method_args", "source"}
    for key in sorted(set(data) - known):
        raise UserError(f"{where}: unknown key '{key}'{did_you_mean(key, known | {method_name})}")
    try:
        recipe = Recipe.model_validate({**data, "method_args": {}})
    except ValidationError as exc:
        raise UserError(_format_pydantic(exc, where)) from None

    recipe.method_args = method.validate_section(method_args, where)
    recipe.training = validate_dataclass_section(
        method.config_cls,
        recipe.training,
        names=method.training_fields(),
        section="training",
        where=where,
    )
    recipe.source = where
    check_training_values(recipe, where)
    method.build_config(recipe, hardware_neutral=True)  # cross-field checks; nothing is written
    # Resolved: the method section lists every hyperparameter, defaults included. Defaults are the declared
    # ones, not values __post_init__ derived (e.g. GRPO's generation_batch_size depends on the world size and
    # may not be set together with steps_per_generation).
    defaults = _declared_defaults(method.config_cls)
    recipe.method_args = {
        name: recipe.method_args.get(name, defaults.get(name)) for name in sorted(method.method_fields())
    }
    if check_files:
        _check_files(recipe, where)
    return recipe


# pip package of each tracker transformers can report to (training.report_to)
TRACKER_PACKAGES = {
    "azure_ml": "azureml-core",
    "clearml": "clearml",
    "codecarbon": "codecarbon",
    "comet_ml": "comet_ml",
    "dagshub": "dagshub",
    "dvclive": "dvclive",
    "flyte": "flytekit",
    "kubeflow": "kubeflow",
    "mlflow": "mlflow",
    "neptune": "neptune",
    "swanlab": "swanlab",
    "tensorboard": "tensorboard",
    "trackio": "trackio",
    "wandb": "wandb",
}


def check_report_to(value: Any, where: str) -> None:
    """``training.report_to`` names trackers that exist and are installed (else the Trainer fails after the
    model has loaded); the message says what to install."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    names = [value] if isinstance(value, str) else list(value or [])
    installed = set(get_available_reporting_integrations())
    for name in names:
        if name in ("none", "all"):
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            raise UserError(
                f"{where}: training.report_to: unknown tracker '{name}'{did_you_mean(name, INTEGRATION_TO_CALLBACK)}"
                f"; one of: none, all, {', '.join(sorted(INTEGRATION_TO_CALLBACK))}"
            )
        if name not in installed:
            # posttrain's own extras first
            hint = install_hint(name) or f"pip install {TRACKER_PACKAGES.get(name, name)}"
            raise UserError(
                f"{where}: training.report_to: tracker '{name}' is not installed ({hint}), "
                "or set report_to: none"
            )


def _check_output_dir(path_str: str, where: str) -> None:
    path = Path(path_str).expanduser()
    too_long = [part for part in path.parts if len(part.encode()) > 255]
    if too_long or len(str(path.absolute()).encode()) > 4000:
        raise UserError(
            f"{where}: output_dir: too long for the filesystem (a name is at most 255 bytes, a path 4000): "
            f"{path_str[:60]}..."
        )
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "exists and is a file" if parent == path else f"is under a file ({parent})"
                raise UserError(f"{where}: output_dir: {path_str} {what}; give a folder path")
            break


def check_training_values(recipe: Recipe, where: str) -> None:
    """Values that pass their type check but would stop a run after the model loaded: counts that must be
    at least 1, evaluation without eval data, checkpoints that are never written, an unknown attention
    implementation, an uninstalled tracker, an output_dir that cannot be a folder."""
    training = recipe.training
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = training.get(key)
        if value is not None and value < 1:
            raise UserError(f"{where}: training.{key}: must be at least 1 (got {value})")
    eval_strategy = str(
        getattr(training.get("eval_strategy"), "value", training.get("eval_strategy") or "no")
    )
    if eval_strategy != "no" and recipe.data.eval is None:
        raise UserError(
            f"{where}: training.eval_strategy: '{eval_strategy}' needs evaluation data: add data.eval, "
            "or set eval_strategy: no"
        )
    save_strategy = str(
        getattr(training.get("save_strategy"), "value", training.get("save_strategy") or "steps")
    )
    save_steps = training.get("save_steps")
    if save_strategy == "steps" and save_steps is not None and save_steps <= 0:
        raise UserError(
            f"{where}: training.save_steps: must be above 0 with save_strategy: steps (got {save_steps}: no "
            "checkpoint would ever be written, so the run could not resume); or set save_strategy: no"
        )
    if "report_to" in training:
        check_report_to(training["report_to"], where)
    attn = recipe.model.attn_implementation
    if attn is not None and "/" not in attn:  # owner/name: a hub kernel, resolved when the model loads
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        known = {"eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()}
        if attn not in known:
            raise UserError(
                f"{where}: model.attn_implementation: unknown '{attn}'{did_you_mean(attn, known)}; "
                f"one of: {', '.join(sorted(known))}, or a hub kernel (owner/name)"
            )
    _check_output_dir(recipe.output_dir, where)


def _declared_defaults(config_cls) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _check_files(recipe: Recipe, where: str) -> None:
    from posttrain.methods import get_method, method_names  # lazy: see load_recipe

    method = get_method(recipe.method)
    method.check_files(recipe, where)
    if recipe.evaluate is not None:
        for key in type(recipe.evaluate).model_fields:  # declaration order: the same error every run
            if getattr(recipe.evaluate, key) is None or key in method.evaluations:
                continue
            owners = [m for m in method_names() if key in get_method(m).evaluations]
            raise UserError(
                f"{where}: evaluate.{key}: evaluates models trained with method {' or '.join(owners)}, "
                f"not {recipe.method}"
            )
        if recipe.evaluate.math is not None:
            for bench in recipe.evaluate.math.benchmarks:
                if bench.endswith((".json", ".jsonl")) and find_file(bench) is None:
                    raise UserError(f"{where}: evaluate.math.benchmarks: file not found: {bench}")
        if recipe.evaluate.principles is not None and find_file(recipe.evaluate.principles.data) is None:
            raise UserError(
                f"{where}: evaluate.principles.data: file not found: {recipe.evaluate.principles.data}"
            )
    for split in ("train", "eval"):
        source = getattr(recipe.data, split)
        if source is not None and source.path is not None and find_file(source.path) is None:
            raise UserError(f"{where}: data.{split}.path: file not found: {source.path}")
    name = recipe.model.name_or_path
    looks_local = name.startswith(("/", ".", "~")) or name.endswith(".gguf") or recipe.model.gguf_file
    if looks_local and not name.startswith("embedded:") and find_file(name) is None:
        raise UserError(f"{where}: model.name_or_path: not found: {name}")
    # a local model folder is checked now (config, weights' headers, tokenizer files); hub ids at load time
    tokenizer = recipe.model.tokenizer
    need = ("model",) if tokenizer is not None else ("model", "tokenizer")
    try:
        check_model_source(name, gguf_file=recipe.model.gguf_file, need=need, hub=False)
        if tokenizer is not None:
            check_model_source(tokenizer, field="model.tokenizer", need=("tokenizer",), hub=False)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    if name.startswith("embedded:"):
        alias = name.removeprefix("embedded:")
        if alias not in EMBEDDED_MODELS:
            raise UserError(
                f"{where}: model.name_or_path: unknown embedded model '{alias}'"
                f"{did_you_mean(alias, EMBEDDED_MODELS)}; available: {', '.join(EMBEDDED_MODELS)}"
            )


def dataclass_field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def recipe_launch_comment(path: Path) -> str | None:
    """The first comment line of a recipe (its launch command)."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            return None
    return None

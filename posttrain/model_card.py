"""Model cards: every model ``posttrain train`` writes (the final model, a LoRA adapter, the merged copy)
gets a ``README.md`` with hub metadata (YAML front matter: base model, library, tags, datasets) and what a
reader needs to trust and reproduce it: the method and its paper, the base model's hub id (the embedded
alias maps to the model its GGUF file was made from, never a cache path), the data and what was dropped,
the resolved recipe, the final metrics and any evaluation, the command, the library versions.

The trainers' ``create_model_card`` (what ``Trainer.push_to_hub`` and TRL's checkpoint saves call) writes
this card too (:class:`ModelCardMixin`), so a pushed model carries it instead of TRL's or PEFT's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from posttrain.models import EMBEDDED_MODELS

PAPERS = {
    "cpl": ("Contrastive Preference Learning (Hejna et al., ICLR 2024)", "https://arxiv.org/abs/2310.13639"),
    "rlbff": (
        "RLBFF: Binary Flexible Feedback to bridge between Human Feedback & Verifiable Rewards (NVIDIA, 2025)",
        "https://arxiv.org/abs/2509.21319",
    ),
    "drpo": ("Decoupled Reward Policy Optimization (Li et al., 2025)", "https://arxiv.org/abs/2510.04474"),
}
# what a recipe's method section selects within a method, and the paper of each variant
VARIANTS = {
    ("drpo", "disco"): ("DisCO (Li et al., 2025)", "https://arxiv.org/abs/2505.12366"),
    ("drpo", "grpo"): ("GRPO (Shao et al., DeepSeekMath, 2024)", "https://arxiv.org/abs/2402.03300"),
    ("drpo", "grpo_lp"): ("GRPO with a length penalty (baseline of the DRPO paper)", None),
    ("rlbff", "bradley_terry"): ("Bradley–Terry reward model (baseline of the RLBFF paper)", None),
}
LIBRARIES = (
    "posttrain",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "deepspeed",
    "vllm",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class CardContext:
    """What run_train knows about a run (set on the trainer so ``create_model_card`` can use it too)."""

    recipe: Any  # posttrain.recipe.Recipe
    command: str
    data: list[str] = field(default_factory=list)  # data report lines
    summary: dict[str, Any] = field(default_factory=dict)  # run_summary.json, once known


def base_model_id(model_cfg) -> str | None:
    """The hub id of the model training started from, or None when it is a local model without one."""
    name = model_cfg.name_or_path
    if name.startswith("embedded:"):
        spec = EMBEDDED_MODELS.get(name.removeprefix("embedded:"))
        return spec.hub_id if spec is not None else None
    if Path(name).expanduser().exists() or name.startswith(("/", ".", "~")) or name.endswith(".gguf"):
        return None
    return name if _HUB_ID.match(name) else None


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _variant(recipe) -> str | None:
    if recipe.method == "drpo":
        return recipe.method_args.get("objective") or "drpo"
    if recipe.method == "rlbff":
        return recipe.method_args.get("form") or "yes_no"
    return None


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _flatten(prefix: str, value, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}/{key}" if prefix else str(key), sub, out)
    elif isinstance(value, (int, float, str)) and not isinstance(value, bool) and len(str(value)) < 80:
        out.append((prefix, _fmt(value)))


def first_and_last(rows: list[dict]) -> tuple[dict, dict]:
    """Each metric's first and last logged value over ``rows`` (RL metrics such as the reward are logged
    only on steps that generated rollouts, which need not be the last logged step)."""
    first: dict = {}
    last: dict = {}
    for row in rows:
        last.update(row)
        for key, value in row.items():
            first.setdefault(key, value)
    return first, last


def _metrics_table(history: list[dict]) -> list[str]:
    train = [row for row in history if "loss" in row]
    evals = [row for row in history if any(k.startswith("eval_") for k in row)]
    if not train and not evals:
        return ["No metrics were logged."]
    lines = []
    if train:
        first, last = first_and_last(train)
        keys = [k for k in last if k not in ("epoch", "step") and isinstance(last[k], (int, float))]
        lines += [
            f"Training, first and last logged value (steps {train[0].get('step')} to {train[-1].get('step')}):",
            "",
            "| metric | first | last |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {_fmt(first.get(k, float('nan')))} | {_fmt(last[k])} |" for k in keys]
    if evals:
        last = evals[-1]
        keys = [k for k in last if k.startswith("eval_") and isinstance(last[k], (int, float))]
        lines += ["", f"Evaluation during training (step {last.get('step')}):", "", "| metric | value |"]
        lines += ["|---|---|", *(f"| {k} | {_fmt(last[k])} |" for k in keys)]
    return lines


def build_card(ctx: CardContext, history: list[dict], *, kind: str) -> str:
    """The card text. ``kind``: "model" (full weights), "adapter" (LoRA, PEFT) or "merged" (base +
    adapter, plain transformers)."""
    recipe = ctx.recipe
    base = base_model_id(recipe.model)
    variant = _variant(recipe)
    paper_title, paper_url = PAPERS.get(recipe.method, (recipe.method, None))
    variant_paper = VARIANTS.get((recipe.method, variant))
    rm_head = recipe.method == "rlbff" and variant in ("scalar_head", "bradley_terry")
    datasets = sorted(
        {s.hub for s in (recipe.data.train, recipe.data.eval) if s is not None and s.hub is not None}
    )
    tags = ["posttrain", recipe.method, *([variant] if variant and variant != recipe.method else [])]
    if recipe.method == "drpo" or variant == "bradley_terry":
        tags.append("trl")
    if kind == "adapter":
        tags += ["lora", "peft"]
    meta: dict[str, Any] = {}
    if base:
        meta["base_model"] = base
    meta["library_name"] = "peft" if kind == "adapter" else "transformers"
    meta["pipeline_tag"] = "text-classification" if rm_head else "text-generation"
    meta["tags"] = tags
    if datasets:
        meta["datasets"] = datasets

    name = Path(recipe.output_dir).name + (" (merged)" if kind == "merged" else "")
    what = {
        "model": "A model",
        "adapter": "A LoRA adapter (load it on its base model with PEFT)",
        "merged": "The base model with a LoRA adapter merged in (plain transformers, no PEFT needed),",
    }[kind]
    base_text = (
        f"[{base}](https://huggingface.co/{base})"
        if base
        else f"a local model (`{Path(recipe.model.name_or_path).name}`)"
    )
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# {name}",
        "",
        f"{what} trained with posttrain from {base_text}.",
        "",
        "## Method",
        "",
        f"- **{recipe.method}**: " + (f"[{paper_title}]({paper_url})" if paper_url else paper_title),
    ]
    if variant:
        detail = "objective" if recipe.method == "drpo" else "form"
        vp = (
            f" — [{variant_paper[0]}]({variant_paper[1]})"
            if variant_paper and variant_paper[1]
            else (f" — {variant_paper[0]}" if variant_paper else "")
        )
        lines.append(f"- {recipe.method}.{detail}: `{variant}`{vp}")
    if recipe.method == "drpo" and recipe.method_args.get("rewards"):
        lines.append(f"- rewards: {', '.join(f'`{r}`' for r in recipe.method_args['rewards'])}")
    if recipe.model.lora is not None:
        lora = recipe.model.lora
        lines.append(f"- LoRA: r={lora.r}, alpha={lora.alpha}, target modules {lora.target_modules}")
    lines += ["", "## Data", ""]
    for split in ("train", "eval"):
        source = getattr(recipe.data, split)
        if source is None:
            continue
        where = (
            f"[{source.hub}](https://huggingface.co/datasets/{source.hub})"
            + (f" ({source.name})" if source.name else "")
            + (f", {source.data_dir}" if source.data_dir else "")
            + f", split {source.split}"
            if source.hub
            else f"`{source.path}`"
        )
        limit = f", first {source.limit} records" if source.limit else ""
        lines.append(f"- {split}: {where}, format `{source.format}`{limit}")
    lines += [f"- {line}" for line in ctx.data]

    summary = ctx.summary or {}
    lines += ["", "## Results", ""]
    if summary.get("steps") is not None:
        world = summary.get("world_size", 1)
        where = f"{world} processes ({summary.get('distributed_type')})" if world > 1 else "1 process"
        lines.append(f"{summary['steps']} steps on {where}, {summary.get('train_runtime_s', '?')} s.")
        lines.append("")
    lines += _metrics_table(history)
    for bench, result in (summary.get("evaluate") or {}).items():
        rows: list[tuple[str, str]] = []
        _flatten("", result, rows)
        if rows:
            lines += ["", f"Evaluation after training: **{bench}**", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in rows[:60]]
    if recipe.method == "rlbff":
        lines += [
            "",
            "## Use",
            "",
            "```python",
            "from posttrain.rewards.principle import PrincipleRewardModel",
            'rm = PrincipleRewardModel.from_pretrained("PATH_OR_HUB_ID")',
            'rm.score(prompt_or_messages, response, ["The response is at most 50 words long"])',
            "```",
        ]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        f"{ctx.command}",
        "# or, from the resolved recipe saved beside the model (recipe.yaml):",
        "posttrain train recipe.yaml",
        "```",
        "",
        "Resolved recipe:",
        "",
        "```yaml",
        yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True, width=1000).strip(),
        "```",
        "",
        "## Libraries",
        "",
        ", ".join(f"{k} {v}" for k, v in library_versions().items()),
        "",
    ]
    return "\n".join(lines)


def write_card(directory: str | Path, ctx: CardContext, history: list[dict], *, kind: str) -> Path:
    path = Path(directory) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(build_card(ctx, history, kind=kind))
    tmp.replace(path)
    return path


class ModelCardMixin:
    """Mixed into every posttrain trainer: ``create_model_card`` (called by ``push_to_hub`` and by TRL's
    checkpoint saves) writes posttrain's card when the trainer came from a recipe (``posttrain_card``)."""

    posttrain_card: CardContext | None = None

    def create_model_card(self, *args, **kwargs):
        if self.posttrain_card is None or not self.is_world_process_zero():
            return
        adapter = hasattr(self.model, "peft_config")
        write_card(
            self.args.output_dir,
            self.posttrain_card,
            self.state.log_history,
            kind="adapter" if adapter else "model",
        )

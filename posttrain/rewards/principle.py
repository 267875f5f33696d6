"""Scoring with RLBFF principle reward models, and a TRL reward function built on them.

Paper: "RLBFF: Binary Flexible Feedback to bridge between Human Feedback & Verifiable Rewards" (NVIDIA,
arXiv 2509.21319). A principle RM answers whether a response satisfies a principle the user picks at
inference time::

    reward(x, y, P) = logit(Yes) − logit(No)   at the first assistant token after
                      [x…, assistant: y, user: "Evaluate … principle: P. Only answer Yes or No."]

and P(Yes) = σ(reward) over the two-way {Yes, No} softmax. Scalar-head RMs return their head's output for
the same input; Bradley–Terry RMs score [x…, assistant: y] and ignore the principle.

K principles for one (x, y) share the rendered prefix up to where the principles differ, so
:meth:`PrincipleRewardModel.score` runs the prefix once and reuses its KV cache for the K suffixes, batched.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from posttrain.data.principle import DEFAULT_TEMPLATE, build_rm_messages, rm_input_ids
from posttrain.errors import UserError
from posttrain.lm_head import project_positions
from posttrain.models import (
    RM_CONFIG,
    ModelSpec,
    check_model_source,
    load_errors,
    load_tokenizer,
    resolve_model_path,
)
from posttrain.rewards import completion_text

FORMS = ("yes_no", "scalar_head", "bradley_terry")


def yes_no_token_ids(tokenizer, yes: str = "Yes", no: str = "No") -> tuple[int, int]:
    """The single token ids of the answers; a clear error if either is not one token."""
    ids = []
    for word in (yes, no):
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            pieces = tokenizer.convert_ids_to_tokens(tokens)
            raise UserError(
                f"the answer '{word}' is not a single token for this tokenizer (it is {pieces}); "
                "the Yes/No RM needs single-token answers — use form: scalar_head for this model"
            )
        ids.append(tokens[0])
    if ids[0] == ids[1]:
        raise UserError("'Yes' and 'No' map to the same token id")
    return ids[0], ids[1]


def save_rm_config(out_dir: str | Path, *, form: str, template: str) -> None:
    Path(out_dir, RM_CONFIG).write_text(json.dumps({"form": form, "template": template}, indent=2))


class PrincipleRewardModel:
    """A loaded RM (Yes/No, scalar-head or Bradley–Terry) that scores responses against principles.

    >>> rm = PrincipleRewardModel.from_pretrained("outputs/rlbff-quickstart")
    >>> rm.score("What is 2+2?", "4.", ["The final answer is correct", "The response is in French"])
    """

    def __init__(self, model, tokenizer, *, form: str, template: str = DEFAULT_TEMPLATE):
        if form not in FORMS:
            raise UserError(f"unknown RM form '{form}'; one of {', '.join(FORMS)}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.form = form
        self.template = template
        self.yes_id, self.no_id = yes_no_token_ids(tokenizer) if form == "yes_no" else (None, None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # newer transformers name the forward's KV-cache argument `cache` (was `past_key_values`)
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        form: str | None = None,
        dtype: str = "auto",
        device=None,
        field: str = "model",
    ):
        """Load a saved RM. ``form`` defaults to what training saved (posttrain_rm.json), else is inferred
        from the architecture (…ForSequenceClassification → scalar_head, causal LM → yes_no). A source that
        cannot load is a :class:`UserError` naming ``field`` (the flag or recipe key that gave it)."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

        check_model_source(name_or_path, field=field)
        with load_errors(field, name_or_path):
            path = resolve_model_path(name_or_path)
        saved = Path(path, RM_CONFIG)
        try:
            meta = json.loads(saved.read_text()) if saved.is_file() else {}
        except ValueError as exc:
            raise UserError(f"{field}: {saved} is not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise UserError(f"{field}: {saved} is not a JSON object")
        if form is None:
            form = meta.get("form")
        with load_errors(field, name_or_path):
            if form is None:
                architectures = AutoConfig.from_pretrained(path).architectures or []
                form = (
                    "scalar_head" if any("SequenceClassification" in a for a in architectures) else "yes_no"
                )
            auto = AutoModelForCausalLM if form == "yes_no" else AutoModelForSequenceClassification
            torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
            model = auto.from_pretrained(path, dtype=torch_dtype)
        if device is not None:
            model = model.to(device)
        try:
            tokenizer = load_tokenizer(ModelSpec(name_or_path=path), padding_side="left")
        except UserError as exc:  # name the flag, not the recipe key the loader names
            raise UserError(str(exc).replace("model.name_or_path", field, 1)) from None
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return cls(model, tokenizer, form=form, template=meta.get("template", DEFAULT_TEMPLATE))

    # ------------------------------------------------------------------------------------------------
    def _sequences(self, context, response, principles: Sequence[str | None]) -> list[list[int]]:
        if self.form == "bradley_terry":
            ids = rm_input_ids(
                self.tokenizer, build_rm_messages(context, response, None), generation_prompt=False
            )
            return [ids for _ in principles]
        return [
            rm_input_ids(self.tokenizer, build_rm_messages(context, response, p, self.template))
            for p in principles
        ]

    def _read_rewards(self, output) -> torch.Tensor:
        """Reward per row; a Yes/No forward kept only each row's last real position (``logits_to_keep``)."""
        logits = output.logits
        if self.form != "yes_no":
            return logits[:, 0].float()
        return (logits[:, -1, self.yes_id] - logits[:, -1, self.no_id]).float()

    @torch.no_grad()
    def _score_sequences(self, sequences: list[list[int]], batch_size: int) -> list[float]:
        """Independent (left-padded) forward passes: the reference path."""
        device = self.model.device
        rewards = []
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            length = max(map(len, chunk))
            ids = torch.full((len(chunk), length), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, seq in enumerate(chunk):
                ids[row, length - len(seq) :] = torch.tensor(seq)
                mask[row, length - len(seq) :] = 1
            kwargs = {"logits_to_keep": 1} if self.form == "yes_no" else {}
            out = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device),
                use_cache=False,
                **kwargs,
            )
            rewards.extend(self._read_rewards(out).tolist())
        return rewards

    @torch.no_grad()
    def _score_shared_prefix(self, sequences: list[list[int]]) -> list[float] | None:
        """Run the common token prefix once, then all suffixes against its KV cache. None if no prefix."""
        prefix_len = 0
        for column in zip(*sequences):
            if any(tok != column[0] for tok in column):
                break
            prefix_len += 1
        prefix_len = min(prefix_len, min(map(len, sequences)) - 1)  # every suffix keeps ≥ 1 token
        if prefix_len < 1:
            return None
        device = self.model.device
        prefix = torch.tensor([sequences[0][:prefix_len]], device=device)
        out = self.model(input_ids=prefix, use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        cache.batch_repeat_interleave(len(sequences))
        suffixes = [seq[prefix_len:] for seq in sequences]
        length = max(map(len, suffixes))
        ids = torch.full((len(suffixes), length), self.pad_id, dtype=torch.long, device=device)
        mask = torch.zeros((len(suffixes), prefix_len + length), dtype=torch.long, device=device)
        mask[:, :prefix_len] = 1
        for row, suffix in enumerate(suffixes):  # right-padded: pads come after every real token
            ids[row, : len(suffix)] = torch.tensor(suffix)
            mask[row, prefix_len : prefix_len + len(suffix)] = 1
        positions = torch.arange(prefix_len, prefix_len + length, device=device).expand(len(suffixes), -1)
        last = torch.tensor([len(s) - 1 for s in suffixes], device=device)
        keep = nullcontext()
        if self.form == "yes_no":  # only each row's last real position reaches the LM head
            last_only = torch.zeros_like(ids, dtype=torch.bool)
            last_only[torch.arange(len(suffixes), device=device), last] = True
            keep = project_positions(self.model, last_only)
        with keep:
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{self._cache_kwarg: cache},
            )
        if self.form == "yes_no":
            out.logits = out.logits.unsqueeze(1)  # (N, V) -> (N, 1, V): what _read_rewards reads
        return self._read_rewards(out).tolist()

    def score(
        self,
        context: str | list[dict[str, str]],
        response: str,
        principles: Sequence[str],
        *,
        share_prefix: bool = True,
        return_p_yes: bool = False,
    ):
        """One reward per principle for one (context, response); with ``return_p_yes`` also σ(reward)."""
        principles = list(principles)
        if not principles:
            raise UserError("give at least one principle")
        if self.form != "bradley_terry" and any(not p for p in principles):
            raise UserError(f"a {self.form} principle RM needs a non-empty principle for every score")
        if self.form == "bradley_terry":  # one score per response, whatever the principles
            rewards = self._score_sequences(self._sequences(context, response, [None]), 1) * len(principles)
        else:
            sequences = self._sequences(context, response, principles)
            rewards = self._score_shared_prefix(sequences) if share_prefix and len(principles) > 1 else None
            if rewards is None:
                rewards = self._score_sequences(sequences, 8)
        if return_p_yes:
            return rewards, torch.sigmoid(torch.tensor(rewards)).tolist()
        return rewards

    def rm_bench_scorer(self):
        """The ``scorer(prompt, responses, principle)`` the RM-Bench evaluator calls."""

        def scorer(prompt, responses, principle):
            return [r[0] for r in self.score_batch([(prompt, y) for y in responses], [principle])]

        return scorer

    def score_batch(
        self,
        items: Sequence[tuple[Any, str]],
        principles: Sequence[str] | Sequence[Sequence[str]],
        *,
        batch_size: int = 8,
    ) -> list[list[float]]:
        """Rewards for many (context, response) items: the same principle list for all, or one list per item.

        Items with one principle are batched together; items with several use the shared-prefix path.
        """
        shared = bool(principles) and (isinstance(principles[0], str) or principles[0] is None)
        per_item = [list(principles)] * len(items) if shared else principles
        if len(per_item) != len(items):
            raise UserError(f"{len(items)} items but {len(per_item)} principle lists")
        if self.form != "bradley_terry" and any(not p for ps in per_item for p in ps):
            raise UserError(f"a {self.form} principle RM needs a non-empty principle for every score")
        results: list[list[float] | None] = [None] * len(items)
        singles = [
            (i, seq)
            for i, (ctx, resp) in enumerate(items)
            if len(per_item[i]) == 1
            for seq in self._sequences(ctx, resp, per_item[i])
        ]
        if singles:
            rewards = self._score_sequences([seq for _, seq in singles], batch_size)
            for (i, _), reward in zip(singles, rewards):
                results[i] = [reward]
        for i, (ctx, resp) in enumerate(items):
            if results[i] is None:
                results[i] = self.score(ctx, resp, per_item[i])
        return results  # type: ignore[return-value]


class PrincipleReward:
    """A TRL reward function (``reward_funcs=[PrincipleReward(rm, ...)]``) backed by a principle RM.

    The principle of each sample comes from a dataset column (``principle_column``, a string or a list
    of strings per sample) or from a fixed list; several principles are combined as a weighted sum. The
    policy never sees the principle: it only appears in the RM's evaluation turn.
    """

    def __init__(
        self,
        rm: PrincipleRewardModel,
        *,
        principles: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        principle_column: str = "principle",
        batch_size: int = 8,
    ):
        self.rm = rm
        self.principles = list(principles) if principles is not None else None
        self.weights = list(weights) if weights is not None else None
        if self.weights is not None and (
            self.principles is None or len(self.weights) != len(self.principles)
        ):
            raise UserError("weights need a fixed principles list of the same length")
        self.principle_column = principle_column
        self.batch_size = batch_size
        self.__name__ = "principle_rm"  # TRL logs rewards under the function's name

    def __call__(self, prompts, completions, **columns) -> list[float]:
        items = [(prompt, completion_text(completion)) for prompt, completion in zip(prompts, completions)]
        if self.principles is not None:
            per_item = [self.principles] * len(items)
        else:
            if self.principle_column not in columns:
                raise UserError(
                    f"the dataset has no '{self.principle_column}' column and no fixed principles were given"
                )
            per_item = [[p] if isinstance(p, str) else list(p) for p in columns[self.principle_column]]
        rewards = self.rm.score_batch(items, per_item, batch_size=self.batch_size)
        weights = self.weights
        return [
            sum(w * r for w, r in zip(weights or [1.0] * len(item), item))
            if weights
            else sum(item) / len(item)
            for item in rewards
        ]

"""Principle records for RLBFF reward models (the HelpSteer3-Principle format).

A record::

    {"context": [{"role": "user", "content": ...}, ...] | "plain prompt",
     "response": "...", "principle": "The response is at most 20 words long.", "fulfilment": "Yes"}

``fulfilment`` is Yes, No or Partially. As in the paper's HelpSteer3-Principle filtering, Partially is
dropped by default and counted (``partially_as`` can map it to Yes or No instead), and so are records of the
catch-all principle "helpfulness" (case, whitespace and a final period ignored; ``keep_helpfulness`` keeps
them) — the same two filters ``posttrain principles extract`` applies when it writes records. Any other
label, a missing field or an empty principle is an error naming the record.

The RM input is the conversation [context…, assistant: response, user: evaluation question] rendered with
the chat template and its generation prompt (see :func:`build_rm_messages`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from posttrain.data.preference import DropReport, _as_messages, _require, _where
from posttrain.errors import UserError

LABELS = {"yes": 1, "no": 0}
# The paper drops this catch-all principle: it restates overall preference instead of a checkable property.
CATCH_ALL_PRINCIPLE = "helpfulness"


def is_catch_all(principle: str) -> bool:
    """Whether a principle is the catch-all "helpfulness" (case, whitespace and a final period ignored)."""
    return " ".join(principle.split()).rstrip(".").strip().lower() == CATCH_ALL_PRINCIPLE


# The paper's evaluation turn (RLBFF §3, the principle RM's prompt).
DEFAULT_TEMPLATE = (
    "Evaluate the response to the previous prompt in terms of whether it satisfies this principle: "
    "{principle}. Only answer Yes or No."
)


def build_rm_messages(
    context: str | list[dict[str, str]],
    response: str,
    principle: str | None,
    template: str = DEFAULT_TEMPLATE,
) -> list[dict[str, str]]:
    """[context…, assistant: response, user: template(principle)]; no evaluation turn when principle is None.

    A trailing period of the principle is dropped so the template's own period does not double it.
    """
    messages = _as_messages(context, "context", "context")
    messages = [*messages, {"role": "assistant", "content": response}]
    if principle is not None:
        messages.append({"role": "user", "content": template.format(principle=principle.strip().rstrip("."))})
    return messages


def rm_input_ids(tokenizer, messages: list[dict[str, str]], *, generation_prompt: bool = True) -> list[int]:
    """Token ids of the chat-template rendering (some tokenizers return a BatchEncoding, some a list)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def adapt_principles(
    records: list[dict[str, Any]],
    source: str,
    *,
    partially_as: str | None = None,
    keep_helpfulness: bool = False,
) -> tuple[list[dict[str, Any]], DropReport]:
    """Validate principle records → {"context", "response", "principle", "label"} (label 1 = Yes, 0 = No).

    Dropped and counted in the report: Partially (unless ``partially_as``), the "helpfulness" principle
    (unless ``keep_helpfulness``), empty responses."""
    if not records:
        raise UserError(f"{source}: no records")
    report = DropReport(source=source, read=len(records))
    out = []
    for i, rec in enumerate(records):
        where = _where(source, i)
        context = _as_messages(_require(rec, "context", where), where, "context")
        response, principle = _require(rec, "response", where), _require(rec, "principle", where)
        label = _require(rec, "fulfilment", where)
        if not isinstance(response, str):
            raise UserError(f"{where}: field 'response' must be a string")
        if not isinstance(principle, str) or not principle.strip():
            raise UserError(f"{where}: field 'principle' must be a non-empty string")
        key = str(label).strip().lower()
        if not keep_helpfulness and is_catch_all(principle):
            report.drop("principle helpfulness")
            continue
        if key == "partially":
            if partially_as is None:
                report.drop("fulfilment Partially")
                continue
            key = partially_as.lower()
        if key not in LABELS:
            raise UserError(f"{where}: field 'fulfilment' must be Yes, No or Partially, got {label!r}")
        if not response.strip():
            report.drop("empty response")
            continue
        item = {"context": context, "response": response, "principle": principle, "label": LABELS[key]}
        if isinstance(
            rec.get("family"), str
        ):  # generated data tags each record's check (per-family accuracy)
            item["family"] = rec["family"]
        out.append(item)
    report.kept = len(out)
    return out, report


def context_key(context) -> str:
    """A hashable key that is equal for equal contexts (message lists or prompts)."""
    return json.dumps(context, sort_keys=True)


def tokenize_principles(
    records: list[dict[str, Any]],
    tokenizer,
    *,
    max_length: int,
    template: str = DEFAULT_TEMPLATE,
    report: DropReport | None = None,
) -> list[dict[str, Any]]:
    """Render and tokenize; records longer than ``max_length`` are dropped (truncating would cut the
    question or the response, the two parts the label is about)."""
    out = []
    contexts: dict[str, int] = {}  # context → id, for batching a context's records together
    for rec in records:
        messages = build_rm_messages(rec["context"], rec["response"], rec["principle"], template)
        ids = rm_input_ids(tokenizer, messages)
        if len(ids) > max_length:
            if report is not None:
                report.drop("over max_length")
            continue
        out.append(
            {
                "input_ids": list(ids),
                "label": rec["label"],
                "context_id": contexts.setdefault(context_key(rec["context"]), len(contexts)),
            }
        )
    if report is not None:
        report.kept = len(out)
    return out


class ContextGroupedSampler(torch.utils.data.Sampler):
    """Contexts in a random order (reshuffled each epoch), the records of one context consecutive, so that
    a batch holds the same responses under different principles. Within such a batch the features of the
    response alone cannot lower the loss (the labels differ only with the principle), so the gradient is
    about reading the principle, the part a principle RM exists for."""

    def __init__(self, context_ids: list[int], seed: int):
        self.groups: dict[int, list[int]] = {}
        for index, context in enumerate(context_ids):
            self.groups.setdefault(context, []).append(index)
        self.seed, self.epoch, self._len = seed, 0, len(context_ids)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        keys = list(self.groups)
        for k in torch.randperm(len(keys), generator=generator).tolist():
            yield from self.groups[keys[k]]


@dataclass
class LeftPadCollator:
    """Left-pads so every row's last position is the one the RM reads (the first assistant token)."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        for row, feature in enumerate(features):
            ids = feature["input_ids"]
            input_ids[row, length - len(ids) :] = torch.tensor(ids)
            attention_mask[row, length - len(ids) :] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "fulfilled": torch.tensor([f["label"] for f in features], dtype=torch.long),
        }

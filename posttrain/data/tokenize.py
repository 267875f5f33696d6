"""Tokenizing normalized preference records and collating them into batches.

A record becomes ``prompt_ids`` (the prompt rendered with the chat template and the generation prompt)
and one ``response_ids`` list per response (the rest of the rendered conversation: the response and the
template's end-of-turn tokens). Prompts keep their last ``max_prompt_length`` tokens; responses are cut to
fit ``max_length`` (or the record is dropped with ``overlong="drop"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Any, Literal

import torch

from posttrain.data.report import DropReport


def render(tokenizer, prompt: list[dict[str, str]], response: str | None = None) -> str:
    """The chat-template text of a prompt (with generation prompt), or of prompt + assistant response."""
    if tokenizer.chat_template is None:
        # Base models without a template: plain concatenation, the response closed by EOS.
        text = "\n\n".join(m["content"] for m in prompt) + "\n\n"
        return text if response is None else text + response + (tokenizer.eos_token or "")
    if response is None:
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": response}], add_generation_prompt=False, tokenize=False
    )


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tokenize_record(
    record: dict[str, Any], tokenizer, *, max_length: int, max_prompt_length: int, overlong: str = "truncate"
) -> tuple[dict[str, Any] | None, list[str]]:
    """(tokenized record or None if dropped, notes such as 'prompt truncated')."""
    prompt_text = render(tokenizer, record["prompt"])
    prompt_ids = _ids(tokenizer, prompt_text)
    notes = []
    if len(prompt_ids) > max_prompt_length:
        if overlong == "drop":
            return None, ["over max_prompt_length"]
        prompt_ids = prompt_ids[-max_prompt_length:]
        notes.append("prompt truncated")
    budget = max_length - len(prompt_ids)
    responses = []
    for response in record["responses"]:
        full = render(tokenizer, record["prompt"], response)
        if full.startswith(prompt_text):
            completion = full[len(prompt_text) :]
        else:  # templates that rewrite earlier turns: fall back to the bare response
            completion = response + (tokenizer.eos_token or "")
        ids = _ids(tokenizer, completion)
        if len(ids) > budget:
            if overlong == "drop":
                return None, ["over max_length"]
            ids = ids[:budget]
            notes.append("response truncated")
        responses.append(ids)
    return {"prompt_ids": prompt_ids, "response_ids": responses, "scores": list(record["scores"])}, notes


def tokenize_preferences(
    records: list[dict[str, Any]],
    tokenizer,
    *,
    max_length: int,
    max_prompt_length: int,
    overlong: Literal["truncate", "drop"] = "truncate",
    report: DropReport | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    out = []
    for record in tqdm(records, desc="tokenizing", disable=not progress or len(records) < 1000):
        item, notes = tokenize_record(
            record, tokenizer, max_length=max_length, max_prompt_length=max_prompt_length, overlong=overlong
        )
        if report is not None:
            for note in set(notes):
                (report.drop(note) if item is None else report.truncated.update([note]))
        if item is not None:
            out.append(item)
    if report is not None:
        report.kept = len(out)
    return out


@dataclass
class RankedPreferenceCollator:
    """Flattens a batch of tokenized records (K ≥ 2 responses each) into one right-padded batch.

    Returns ``input_ids``/``attention_mask`` (N, L) for the N = Σ K responses, ``response_mask`` (N, L)
    marking response tokens, ``better``/``worse``/``pair_record`` (P,) for every strictly ordered pair,
    and ``is_best`` (N,) marking each record's top-scored response (the BC target).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs, masks, better, worse, pair_record, is_best = [], [], [], [], [], []
        for r, feature in enumerate(features):
            base = len(seqs)
            prompt = list(feature["prompt_ids"])
            for response in feature["response_ids"]:
                seqs.append(prompt + list(response))
                masks.append([0] * len(prompt) + [1] * len(response))
            scores = feature["scores"]
            for i, j in permutations(range(len(scores)), 2):
                if scores[i] > scores[j]:
                    better.append(base + i)
                    worse.append(base + j)
                    pair_record.append(r)
            top = max(range(len(scores)), key=scores.__getitem__)
            is_best.extend(k == top for k in range(len(scores)))
        length = max(len(s) for s in seqs)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(seqs), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(seqs), length), dtype=torch.long)
        response_mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for n, (seq, mask) in enumerate(zip(seqs, masks)):
            input_ids[n, : len(seq)] = torch.tensor(seq)
            attention_mask[n, : len(seq)] = 1
            response_mask[n, : len(seq)] = torch.tensor(mask)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "response_mask": response_mask,
            "better": torch.tensor(better, dtype=torch.long),
            "worse": torch.tensor(worse, dtype=torch.long),
            "pair_record": torch.tensor(pair_record, dtype=torch.long),
            "is_best": torch.tensor(is_best, dtype=torch.bool),
        }

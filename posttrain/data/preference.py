"""Preference data adapters.

Every supported format becomes one normalized record::

    {"prompt": [{"role": "user", "content": ...}, ...], "responses": [str, ...], "scores": [float, ...]}

A pair is the two-response case (chosen scored 1, rejected 0); ranked lists keep their scores. Formats:

- ``pairs``: ``prompt``/``chosen``/``rejected`` as plain text, or conversational: ``chosen``/``rejected`` as
  message lists (with or without a separate ``prompt``), as in TRL and UltraFeedback-binarized.
- ``hh``: Anthropic HH transcripts ``"\\n\\nHuman: …\\n\\nAssistant: …"`` in ``chosen``/``rejected``; the shared
  turns become the prompt, the final assistant turns the two responses.
- ``ranked``: ``prompt`` + ``responses`` (list) + ``scores`` (numbers, higher is better) for CPL's dense mode.
- ``helpsteer3``: the HelpSteer3 ``preference`` config (``context``, ``response1``, ``response2``,
  ``overall_preference`` in −3…3, negative = response1 better); ties are dropped.

A malformed record (missing field, wrong type) is a :class:`UserError` naming the record and field. A
well-formed record that cannot train (empty response, all scores tied, HH turns that do not share a
prompt) is dropped and counted by reason.
"""

from __future__ import annotations

import math
import re
from typing import Any

from posttrain.data.report import DropReport
from posttrain.data.sources import read_source
from posttrain.errors import UserError


class _Drop(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _where(source: str, index: int) -> str:
    return f"{source}: record {index + 1}"


def _require(rec: dict, key: str, where: str) -> Any:
    if key not in rec or rec[key] is None:
        raise UserError(
            f"{where}: missing field '{key}' (fields present: {', '.join(sorted(rec)) or 'none'})"
        )
    return rec[key]


def _as_messages(value: Any, where: str, key: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    ):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise UserError(f"{where}: field '{key}' must be a string or a list of {{role, content}} messages")


def _response_text(value: Any, where: str, key: str) -> tuple[list[dict[str, str]] | None, str]:
    """(prompt messages carried by a conversational response or None, response text)."""
    if isinstance(value, str):
        return None, value
    messages = _as_messages(value, where, key)
    if not messages or messages[-1]["role"] != "assistant":
        raise UserError(f"{where}: field '{key}' must end with an assistant message")
    return messages[:-1], messages[-1]["content"]


def adapt_pair(rec: dict, where: str) -> dict:
    chosen_prefix, chosen = _response_text(_require(rec, "chosen", where), where, "chosen")
    rejected_prefix, rejected = _response_text(_require(rec, "rejected", where), where, "rejected")
    if rec.get("prompt") is not None:
        prompt = _as_messages(rec["prompt"], where, "prompt")
        # TRL's conversational form repeats nothing; UltraFeedback's repeats the prompt in chosen/rejected.
        for prefix in (chosen_prefix, rejected_prefix):
            if prefix and prefix != prompt:
                raise _Drop("prompt differs from chosen/rejected conversation")
    else:
        if chosen_prefix is None or rejected_prefix is None:
            raise UserError(f"{where}: missing field 'prompt' (needed when chosen/rejected are plain text)")
        if chosen_prefix != rejected_prefix:
            raise _Drop("chosen and rejected conversations differ before the last turn")
        prompt = chosen_prefix
    return {"prompt": prompt, "responses": [chosen, rejected], "scores": [1.0, 0.0]}


_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def parse_hh(text: str) -> list[dict[str, str]]:
    """Split an HH transcript into messages (Human → user, Assistant → assistant)."""
    parts = _HH_TURN.split(text)
    messages = []
    # parts = [preamble, role, content, role, content, ...]
    for role, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    return messages


def adapt_hh(rec: dict, where: str) -> dict:
    chosen, rejected = (_require(rec, key, where) for key in ("chosen", "rejected"))
    for key, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str):
            raise UserError(f"{where}: field '{key}' must be an HH transcript string")
    c_msgs, r_msgs = parse_hh(chosen), parse_hh(rejected)
    if not c_msgs or c_msgs[-1]["role"] != "assistant" or not r_msgs or r_msgs[-1]["role"] != "assistant":
        raise _Drop("HH transcript does not end with an Assistant turn")
    if c_msgs[:-1] != r_msgs[:-1]:
        raise _Drop("HH chosen and rejected do not share their prompt turns")
    return {
        "prompt": c_msgs[:-1],
        "responses": [c_msgs[-1]["content"], r_msgs[-1]["content"]],
        "scores": [1.0, 0.0],
    }


def adapt_ranked(rec: dict, where: str) -> dict:
    prompt = _as_messages(_require(rec, "prompt", where), where, "prompt")
    responses, scores = _require(rec, "responses", where), _require(rec, "scores", where)
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise UserError(f"{where}: field 'responses' must be a list of strings")
    if not isinstance(scores, list) or not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores
    ):
        raise UserError(f"{where}: field 'scores' must be a list of numbers")
    if not all(math.isfinite(s) for s in scores):
        raise UserError(
            f"{where}: field 'scores' holds a non-finite value ({scores}); scores must be finite numbers"
        )
    if len(scores) != len(responses):
        raise UserError(f"{where}: 'responses' has {len(responses)} items but 'scores' has {len(scores)}")
    if len(responses) < 2:
        raise _Drop("fewer than 2 responses")
    if len(set(scores)) < 2:
        raise _Drop("all scores tied")
    return {"prompt": prompt, "responses": list(responses), "scores": [float(s) for s in scores]}


def adapt_helpsteer3(rec: dict, where: str) -> dict:
    """HelpSteer3 ``preference`` config: ``context``, ``response1``, ``response2``, ``overall_preference``
    in −3…3, negative when response1 is better. The strength becomes the score gap; 0 (a tie) is dropped."""
    prompt = _as_messages(_require(rec, "context", where), where, "context")
    first, second = _require(rec, "response1", where), _require(rec, "response2", where)
    preference = _require(rec, "overall_preference", where)
    if not isinstance(first, str) or not isinstance(second, str):
        raise UserError(f"{where}: fields 'response1' and 'response2' must be strings")
    if (
        not isinstance(preference, (int, float))
        or isinstance(preference, bool)
        or not math.isfinite(preference)
    ):
        raise UserError(f"{where}: field 'overall_preference' must be a number in -3..3")
    if preference == 0:
        raise _Drop("all scores tied")
    return {"prompt": prompt, "responses": [first, second], "scores": [float(-preference), float(preference)]}


ADAPTERS = {"pairs": adapt_pair, "hh": adapt_hh, "ranked": adapt_ranked, "helpsteer3": adapt_helpsteer3}


def detect_format(rec: dict) -> str:
    if "responses" in rec and "scores" in rec:
        return "ranked"
    if "response1" in rec and "response2" in rec and "overall_preference" in rec:
        return "helpsteer3"
    if "chosen" in rec and "rejected" in rec:
        if "prompt" not in rec and isinstance(rec["chosen"], str) and "\n\nAssistant:" in rec["chosen"]:
            return "hh"
        return "pairs"
    raise UserError(
        "cannot detect the data format from fields "
        f"{sorted(rec)}: expected prompt/chosen/rejected, chosen/rejected HH transcripts, or prompt/responses/scores"
    )


def adapt_preferences(records: list[dict], fmt: str, source: str) -> tuple[list[dict], DropReport]:
    """Normalize raw records; malformed ones raise :class:`UserError`, untrainable ones are counted."""
    report = DropReport(source=source, read=len(records))
    if not records:
        raise UserError(f"{source}: no records")
    if fmt == "auto":
        try:
            fmt = detect_format(records[0])
        except UserError as exc:
            raise UserError(f"{source}: record 1: {exc}") from None
    if fmt not in ADAPTERS:
        raise UserError(f"{source}: format '{fmt}' is not a preference format ({', '.join(ADAPTERS)})")
    adapter = ADAPTERS[fmt]
    out = []
    for i, rec in enumerate(records):
        try:
            item = adapter(rec, _where(source, i))
        except _Drop as drop:
            report.drop(drop.reason)
            continue
        if any(not r.strip() for r in item["responses"]):
            report.drop("empty response")
            continue
        out.append(item)
    report.kept = len(out)
    return out, report


def load_preference_split(
    source,
    tokenizer,
    *,
    max_length: int,
    max_prompt_length: int,
    overlong: str = "truncate",
    progress: bool = True,
) -> tuple[list[dict], DropReport]:
    """Read, adapt and tokenize one recipe data source; raises :class:`UserError` if nothing is left."""
    # lazy: data.tokenize imports torch; the adapters above serve light commands (eval math, score)
    from posttrain.data.tokenize import tokenize_preferences

    raw, label = read_source(source)
    records, report = adapt_preferences(raw, source.format, label)
    tokenized = tokenize_preferences(
        records,
        tokenizer,
        max_length=max_length,
        max_prompt_length=max_prompt_length,
        overlong=overlong,
        report=report,
        progress=progress,
    )
    if not tokenized:
        raise UserError(f"{report.summary()}: no usable records left")
    return tokenized, report

"""Reward functions: principle reward models (RLBFF) and the TRL reward-function wrappers around them;
verifiable math correctness (:mod:`posttrain.rewards.math`, DRPO)."""

from typing import Any


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a conversational list of messages (assistant turns joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        parts = [
            str(m.get("content") or "")
            for m in completion
            if isinstance(m, dict) and m.get("role", "assistant") == "assistant"
        ]
        return "\n".join(parts)
    return ""

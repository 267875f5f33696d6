"""Verifiable math rewards: is a completion's final answer equal to the gold answer?

Used by DRPO (Li et al., arXiv 2510.04474), whose reward is binary correctness of the final answer on
math problems (training on MATH / DeepScaleR, evaluation on GSM8K, MATH500, AIME, AMC, Minerva,
OlympiadBench). The prompt ends with :data:`DRPO_SUFFIX`, so a well-behaved model writes its answer in
``\\boxed{}``.

Equivalence is decided by ``math-verify`` (Hugging Face): both sides are parsed to SymPy and compared
numerically and symbolically, so ``0.5`` matches ``\\frac{1}{2}``, ``70,000`` matches ``70000`` and
``(3, \\frac{\\pi}{2})`` matches ``\\left( 3, \\frac{\\pi}{2} \\right)``.

Extraction: the content of the *last* ``\\boxed{...}`` (or ``\\fbox{...}``) of the completion wins when it
parses; otherwise math-verify's default extraction runs on the whole completion (LaTeX, then plain
expressions, preferring answer-like anchors and the last match), which lets a model that forgot the box
still score when its last number is right.

Threads: math-verify bounds parsing and comparison time with ``signal.alarm``, which only works in the
main thread (elsewhere it raises ``ValueError``). TRL may call reward functions from worker threads (async
rewards, the evaluator's helpers), so off the main thread the timeouts are switched off
(``parsing_timeout=None``, ``timeout_seconds=None``) and the input is capped at
:data:`MAX_COMPLETION_CHARS` instead, which keeps SymPy's work bounded in practice.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

from posttrain.rewards import completion_text

DRPO_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."

# math-verify's per-call time limit in the main thread (seconds; its own default is 5).
TIMEOUT_S = 5
# Only the tail of a longer completion is searched: the final answer is at the end, and a bounded input
# keeps parsing time bounded where no timeout can run (worker threads).
MAX_COMPLETION_CHARS = 8000

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_BARE = re.compile(r"\\boxed +([^\s$]+)")  # "\boxed 5" (no braces), as some models write

logger = logging.getLogger(__name__)


def _not_timeout_disabled(record: logging.LogRecord) -> bool:
    """math-verify warns once when timeouts are off; here that is deliberate (see the module docstring)."""
    return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_not_timeout_disabled)


def extract_gsm8k_answer(text: str) -> str:
    """The number after the last ``####`` of a GSM8K solution, without commas or spaces ("2,125" → "2125").

    Raises ``ValueError`` when the text has no ``####`` or nothing follows it.
    """
    if not isinstance(text, str) or "####" not in text:
        raise ValueError("no '####' final-answer marker")
    answer = text.rsplit("####", 1)[1].strip().replace(",", "")
    answer = "".join(answer.split())
    if not answer:
        raise ValueError("nothing after '####'")
    return answer


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (braces balanced), else of ``\\boxed x``.

    None when there is none, or when the last box is never closed (a truncated completion).
    """
    starts = list(_BOX.finditer(text))
    if starts:
        start = starts[-1].end()
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
        return None
    bare = _BOX_BARE.findall(text)
    return bare[-1].strip() if bare else None


def gold_to_str(gold: Any) -> str:
    """A gold answer as a string: numbers from JSON (``142.0``, ``70``) become ``"142"``, ``"70"``."""
    if isinstance(gold, bool):
        raise TypeError("a gold answer cannot be a boolean")
    if isinstance(gold, int):
        return str(gold)
    if isinstance(gold, float):
        return str(int(gold)) if gold.is_integer() else repr(gold)
    if isinstance(gold, str):
        return gold.strip()
    raise TypeError(f"a gold answer must be a string or a number, got {type(gold).__name__}")


def _timeouts() -> int | None:
    """math-verify's signal-based timeout works only in the main thread; None switches it off."""
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse(text: str, timeout: int | None) -> list:
    from math_verify import parse

    return parse(text, parsing_timeout=timeout)


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str, timeout: int | None) -> tuple:
    """Parsed gold (cached: a gold is compared with k samples). LaTeX needs math delimiters to parse, so a
    bare answer such as ``\\frac{1}{2}`` is wrapped in ``$...$``; answers that carry their own ``$`` or
    ``\\boxed`` are parsed as written."""
    if "$" in gold or "\\boxed" in gold:
        parsed = _parse(gold, timeout)
    else:
        parsed = _parse(f"${gold}$", timeout) or _parse(gold, timeout)
    return tuple(parsed)


def _parse_completion(text: str, timeout: int | None) -> list:
    text = text[-MAX_COMPLETION_CHARS:]
    boxed = last_boxed(text)
    if boxed:
        parsed = _parse(f"$\\boxed{{{boxed}}}$", timeout)
        if parsed:
            return parsed
    return _parse(text, timeout)


def is_correct(completion_text: str, gold: str | int | float | Sequence[str | int | float]) -> bool:
    """Whether the completion's final answer equals ``gold`` (math-verify equivalence).

    ``gold``: a string such as ``"18"``, ``"\\frac{1}{2}"`` or ``"\\left( 3, \\frac{\\pi}{2} \\right)"``;
    a JSON number; or a list of acceptable answers (any one matches; Minerva lists variants). Never
    raises on a malformed completion or gold: anything that does not parse is simply wrong (False).
    """
    from math_verify import verify

    if not isinstance(completion_text, str) or not completion_text.strip():
        return False
    golds = list(gold) if isinstance(gold, (list, tuple)) else [gold]
    timeout = _timeouts()
    try:
        predicted = _parse_completion(completion_text, timeout)
        if not predicted:
            return False
        for one in golds:
            parsed_gold = _parse_gold(gold_to_str(one), timeout)
            if parsed_gold and verify(list(parsed_gold), predicted, timeout_seconds=timeout):
                return True
    except Exception:  # math-verify and SymPy can fail in many ways on odd input: that is a wrong answer
        logger.debug("math check failed for %r", completion_text[-200:], exc_info=True)
    return False


def math_correctness(prompts, completions, answer, **kwargs) -> list[float]:
    """TRL GRPO-style reward function: 1.0 when a completion's final answer equals its gold, else 0.0.

    ``answer``: the dataset column, one gold per completion (TRL repeats columns per generation). When the
    dataset also has an ``answers`` column (several acceptable answers, see
    :func:`posttrain.data.math.load_math_split`), a non-empty entry there is used instead. Other keyword
    arguments TRL passes (``completion_ids``, ``trainer_state``, ``log_metric``, ...) are ignored.
    """
    if len(answer) != len(completions):
        raise ValueError(f"math_correctness: {len(completions)} completions but {len(answer)} gold answers")
    alternatives = kwargs.get("answers")
    rewards = []
    for i, (completion, gold) in enumerate(zip(completions, answer)):
        if alternatives is not None and alternatives[i]:
            gold = alternatives[i]
        rewards.append(1.0 if is_correct(completion_text(completion), gold) else 0.0)
    return rewards

"""Verifiable math rewards: is a completion's final answer equal to the gold answer?

Used by DRPO (Li et al., arXiv 2510.04474), whose reward is binary correctness of the final answer on
math problems (training on MATH / DeepScaleR, evaluation on GSM8K, MATH500, AIME, AMC, Minerva,
OlympiadBench). The prompt ends with :data:`DRPO_SUFFIX`, so a well-behaved model writes its answer in
``\\boxed{}``.

Equivalence is decided by ``math-verify`` (Hugging Face): both sides are parsed to SymPy and compared
numerically and symbolically, so ``0.5`` matches ``\\frac{1}{2}``, ``70,000`` matches ``70000`` and
``(3, \\frac{\\pi}{2})`` matches ``\\left( 3, \\frac{\\pi}{2} \\right)``.

Two graders:

- :func:`math_correctness` / :func:`is_correct` (the default, strict): the rule of the official DRPO reward
  (DeepScaleR's ``RewardMathFn`` in Optimization-AI/DRPO). The answer region is the text after the first
  ``</think>`` when the completion has one (thinking models); a completion that opened ``<think>`` and never
  closed it has no answer. The final answer is the content of the *last* ``\\boxed{...}`` /
  ``\\fbox{...}`` (or bare ``\\boxed x``) of that region, or the text after a final ``#### `` (GSM8K's
  marker) when that comes later; a completion with neither is wrong, whatever numbers it contains. A
  completion cut at the length limit (``truncated``: the trainer's or the evaluator's flag, see
  :func:`math_correctness`) is wrong.
- :func:`math_correctness_lenient` / ``is_correct(..., lenient=True)`` (explicit opt-in): the last box when
  it parses, otherwise math-verify's default extraction on the whole completion (the last expression,
  preferring answer-like anchors), with no ``</think>`` or truncation rule. It rewards unfinished answers
  whose last number happens to match ("12*12 = 144. Let me double-check: 144"), which in a group can take
  all of DRPO's weight ω: use it only when a model cannot be prompted into a final-answer format.

Deviations from the official reward (``deepscaler_reward_fn`` on the decoded prompt + response):
equivalence is math-verify's, not DeepScaleR's ``grade_answer_mathd`` / ``grade_answer_sympy``; a
completion with no ``<think>``/``</think>`` at all is read whole (the official reward gives it 0: its models
are R1-distilled thinkers whose chat template opens ``<think>``), so that non-thinking models can be
trained; ``####`` is accepted for every problem, not only GSM8K's; a truncated completion is wrong even
when it boxed an answer before the cut (the official reward only sees the text).

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
_HASHES = re.compile(r"####[ \t]*([^\n]*)")  # GSM8K's final-answer marker, to the end of its line
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"

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


def _last_boxed_span(text: str) -> tuple[int, str | None] | None:
    """(start, content) of the last ``\\boxed{...}`` / ``\\fbox{...}`` (braces balanced), else of
    ``\\boxed x``; content None when that box is never closed (a truncated completion); None without a box."""
    starts = list(_BOX.finditer(text))
    if starts:
        begin, start = starts[-1].start(), starts[-1].end()
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return begin, text[start:i].strip()
        return begin, None
    bare = list(_BOX_BARE.finditer(text))
    return (bare[-1].start(), bare[-1].group(1).strip()) if bare else None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (braces balanced), else of ``\\boxed x``.

    None when there is none, or when the last box is never closed (a truncated completion).
    """
    span = _last_boxed_span(text)
    return span[1] if span else None


def answer_region(text: str) -> str | None:
    """The part of a completion that may hold its final answer: the text after the first ``</think>``
    (thinking models), the whole text when there is no think tag, None when ``<think>`` was opened and
    never closed (the model never left its reasoning)."""
    if _THINK_CLOSE in text:
        return text.split(_THINK_CLOSE, 1)[1]
    if _THINK_OPEN in text:
        return None
    return text


def final_answer(text: str) -> str | None:
    """The strict grader's final answer of a completion, or None when it has none.

    In :func:`answer_region`: the content of the last box (:func:`last_boxed`), or the rest of the line
    after the last ``####`` (GSM8K's marker, commas removed) when that comes after the last box. A box that
    is never closed, an empty box or an empty ``####`` is no answer.
    """
    region = answer_region(text)
    if region is None:
        return None
    span = _last_boxed_span(region)
    hashes = [m for m in _HASHES.finditer(region) if m.group(1).strip()]
    if hashes and (span is None or hashes[-1].start() > span[0]):
        return hashes[-1].group(1).strip().replace(",", "")
    if span is None:
        return None
    return span[1] or None


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
    """The lenient grader's parse: the last box when it parses, else the whole (tail of the) text."""
    text = text[-MAX_COMPLETION_CHARS:]
    boxed = last_boxed(text)
    if boxed:
        parsed = _parse(f"$\\boxed{{{boxed}}}$", timeout)
        if parsed:
            return parsed
    return _parse(text, timeout)


def _parse_final_answer(text: str, timeout: int | None) -> list:
    """The strict grader's parse: only :func:`final_answer`, nothing else of the text."""
    answer = final_answer(text)
    if answer is None or len(answer) > MAX_COMPLETION_CHARS:
        return []
    return _parse(f"$\\boxed{{{answer}}}$", timeout)


def is_correct(
    completion_text: str,
    gold: str | int | float | Sequence[str | int | float],
    *,
    truncated: bool = False,
    lenient: bool = False,
) -> bool:
    """Whether the completion's final answer equals ``gold`` (math-verify equivalence).

    ``gold``: a string such as ``"18"``, ``"\\frac{1}{2}"`` or ``"\\left( 3, \\frac{\\pi}{2} \\right)"``;
    a JSON number; or a list of acceptable answers (any one matches; Minerva lists variants). Strict by
    default (the official DRPO reward, see the module docstring): only :func:`final_answer` counts and a
    ``truncated`` completion (cut at the length limit) is wrong. ``lenient=True``: the last box, else the
    last expression anywhere, and ``truncated`` is ignored. Never raises on a malformed completion or
    gold: anything that does not parse is simply wrong (False).
    """
    from math_verify import verify

    if not isinstance(completion_text, str) or not completion_text.strip():
        return False
    if truncated and not lenient:
        return False
    golds = list(gold) if isinstance(gold, (list, tuple)) else [gold]
    timeout = _timeouts()
    try:
        if lenient:
            predicted = _parse_completion(completion_text, timeout)
        else:
            predicted = _parse_final_answer(completion_text, timeout)
        if not predicted:
            return False
        for one in golds:
            parsed_gold = _parse_gold(gold_to_str(one), timeout)
            if parsed_gold and verify(list(parsed_gold), predicted, timeout_seconds=timeout):
                return True
    except Exception:  # math-verify and SymPy can fail in many ways on odd input: that is a wrong answer
        logger.debug("math check failed for %r", completion_text[-200:], exc_info=True)
    return False


def _grade(completions, answer, kwargs, *, lenient: bool, name: str) -> list[float]:
    if answer is None:  # TRL's accuracy_reward reads the gold from a `solution` column: accept both
        answer = kwargs.get("solution")
    if answer is None:
        raise ValueError(f"{name}: the dataset needs a gold-answer column, 'answer' (or TRL's 'solution')")
    if len(answer) != len(completions):
        raise ValueError(f"{name}: {len(completions)} completions but {len(answer)} gold answers")
    alternatives = kwargs.get("answers")
    truncated = kwargs.get("truncated")
    if truncated is not None and len(truncated) != len(completions):
        raise ValueError(f"{name}: {len(completions)} completions but {len(truncated)} truncation flags")
    rewards = []
    for i, (completion, gold) in enumerate(zip(completions, answer)):
        if alternatives is not None and alternatives[i]:
            gold = alternatives[i]
        cut = bool(truncated[i]) if truncated is not None else False
        rewards.append(
            1.0 if is_correct(completion_text(completion), gold, truncated=cut, lenient=lenient) else 0.0
        )
    return rewards


def math_correctness(prompts, completions, answer=None, **kwargs) -> list[float]:
    """TRL GRPO-style reward function: 1.0 when a completion's final answer equals its gold, else 0.0.

    The strict grader (the official DRPO reward, see the module docstring): a final ``\\boxed{}`` (or
    ``####``) answer is required, read after ``</think>``. ``answer``: the dataset column, one gold per
    completion (TRL repeats columns per generation). When the dataset also has an ``answers`` column
    (several acceptable answers, see :func:`posttrain.data.math.load_math_split`), a non-empty entry there
    is used instead. A dataset written for TRL's ``accuracy_reward`` names the gold column ``solution``:
    it is read when there is no ``answer``. ``truncated``: one flag per completion, True when it was cut
    at the length limit (such a completion is wrong); :class:`posttrain.trainers.drpo_trainer.DRPOTrainer`
    passes it (last token not EOS/pad, TRL's ``completions/clipped_ratio`` rule). TRL's own trainers do not, and then truncation
    is not known to the grader. Other keyword arguments TRL passes (``completion_ids``, ``trainer_state``,
    ``log_metric``, ...) are ignored.
    """
    return _grade(completions, answer, kwargs, lenient=False, name="math_correctness")


def math_correctness_lenient(prompts, completions, answer=None, **kwargs) -> list[float]:
    """Opt-in lenient variant of :func:`math_correctness`: the last box, else the last expression anywhere
    in the completion; think tags and ``truncated`` are ignored. Rewards unfinished answers whose last
    number matches: a recipe that uses it says so in its header."""
    return _grade(completions, answer, kwargs, lenient=True, name="math_correctness_lenient")

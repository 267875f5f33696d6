"""MT-Bench (Zheng et al., "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", NeurIPS 2023 D&B,
arXiv 2306.05685) without FastChat: any local, vLLM or OpenAI-compatible judge, resumable, and writing
FastChat's own file formats so its ``show_result.py`` reads them.

The benchmark: 80 two-turn questions in 8 categories. The policy answers turn 1, then turn 2 with its own
first answer in the conversation (the model's chat template), at FastChat's per-category temperature
(:data:`TEMPERATURES`; 0 means greedy). A judge grades each turn 1–10 (single-answer grading, the standard
MT-Bench score) with FastChat's judge prompts, which are read from the data, never rewritten here:

    turn 1: ``single-v1``, or ``single-math-v1`` with the reference answer for math/reasoning/coding
    turn 2: ``single-v1-multi-turn`` / ``single-math-v1-multi-turn`` (the whole conversation is shown,
            the judge grades the second answer)

Each prompt is ``template.format(question=..., answer=..., ref_answer_1=...)`` exactly as FastChat builds it,
sent as ``[system: template's system prompt, user: rendered prompt]`` at temperature 0 (judge budget 2048
tokens, FastChat's). The rating is the first ``[[x]]`` in the judgment, else the first ``[x]``
(:func:`parse_rating`); a judgment with neither scores −1 and, as in FastChat, is excluded from the means and
counted (``unparseable``). Scores: mean over valid turn-1 judgments, over turn-2 judgments, over all
(``overall``, FastChat's headline number), and per category (both turns).

Pairwise mode (``mode="pairwise"``) compares the answers with a baseline's (FastChat answer file) using the
``pair-v2`` / ``pair-math-v1`` prompts (and their multi-turn variants) in both orders, counted as
FastChat's ``show_result.py`` counts them: a game whose verdict in either order is unparseable (``error``: no
``[[A]]``/``[[B]]``/``[[C]]``) is dropped and counted (``counts.dropped``); of the others, a game is a win or
a loss when both orders name the same model, otherwise (disagreement, or a tie ``[[C]]`` in the first order)
a tie. Win rate = wins / games kept, adjusted win rate = (wins + ties / 2) / games kept.

Files (``out_dir``), FastChat's layout so ``show_result.py --judge-model <judge>`` reads them:

    model_answer/<model_id>.jsonl          {question_id, answer_id, model_id, choices: [{index, turns}], tstamp}
    model_judgment/<judge>_single.jsonl    {question_id, model, judge: [judge, prompt name], user_prompt,
                                            judgment, score, turn, tstamp}
    model_judgment/<judge>_pair.jsonl      {question_id, model_1, model_2, g1_winner, g2_winner, judge,
                                            g1_user_prompt, g1_judgment, g2_user_prompt, g2_judgment, turn, tstamp}
    results.json, mt_bench.png (radar chart: category scores; several runs on one chart with ``compare``)
    run.json                               what was asked (model, judge, settings): a rerun must match it

Resumable: answers (per question, both turns) and judgments are appended as they finish; a rerun of the
same command skips them, so an interrupted run loses nothing finished. A judge request that failed for good
(HTTP, after retries) is not written, is reported as ``missing``, and is retried by the next run.

Deviations from FastChat, and why: prompts go through the model's own chat template (FastChat keeps its
own per-model conversation templates, which posttrain cannot know for a user's checkpoint); sampling uses
temperature alone (no top-k 50, transformers' default, which FastChat inherits implicitly), as vLLM does.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from posttrain import log
from posttrain.chat_backends import build_chat_backend
from posttrain.errors import IncompleteRun, UserError
from posttrain.evaluation.results import RESULTS_FILE, read_results
from posttrain.evaluation.tables import aligned_table
from posttrain.jsonl import RUN_FILE, JsonlAppender, read_jsonl, start_run, write_atomic
from posttrain.paths import PROJECT_ROOT, model_id_for, safe_id

DATA_ENV = "POSTTRAIN_MT_BENCH_DATA"
QUESTION_FILE = "question.jsonl"
JUDGE_PROMPTS_FILE = "judge_prompts.jsonl"
REFERENCE_FILE = "reference_answer/gpt-4.jsonl"
ANSWER_DIR, JUDGMENT_DIR = "model_answer", "model_judgment"
PLOT_FILE = "mt_bench.png"
MODES = ("single", "pairwise")

# FastChat's gen_model_answer.py; a category not listed gets DEFAULT_TEMPERATURE, as there
TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
DEFAULT_TEMPERATURE = 0.7
NEED_REFERENCE = ("math", "reasoning", "coding", "arena-hard-200")
JUDGE_PROMPTS = {  # (mode, needs a reference, turn) -> FastChat prompt name
    ("single", False, 1): "single-v1",
    ("single", True, 1): "single-math-v1",
    ("single", False, 2): "single-v1-multi-turn",
    ("single", True, 2): "single-math-v1-multi-turn",
    ("pairwise", False, 1): "pair-v2",
    ("pairwise", True, 1): "pair-math-v1",
    ("pairwise", False, 2): "pair-v2-multi-turn",
    ("pairwise", True, 2): "pair-math-v1-multi-turn",
}
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")


@dataclass
class MTBenchSettings:
    max_new_tokens: int = 1024
    judge_max_new_tokens: int = 2048
    limit: int | None = None
    mode: str = "single"
    system_prompt: str | None = None
    seed: int = 0

    def check(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        for name in ("max_new_tokens", "judge_max_new_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")


# ------------------------------------------------------------------------------------------------ data


@dataclass
class MTBenchData:
    questions: list[dict]  # {question_id, category, turns: [q1, q2]}
    judge_prompts: dict[str, dict]  # name -> {name, type, system_prompt, prompt_template, output_format, ...}
    references: dict[int, list[str]]  # question_id -> reference answer turns
    source: str


def default_data_dir() -> Path | None:
    """``$POSTTRAIN_MT_BENCH_DATA``, else the shared copy beside the project (``../shared/benchmarks/mt-bench``)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    local = PROJECT_ROOT.parent / "shared" / "benchmarks" / "mt-bench"
    return local if local.is_dir() else None


def _hub_snapshot(dataset_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id=dataset_id,
            repo_type="dataset",
            allow_patterns=[QUESTION_FILE, JUDGE_PROMPTS_FILE, "reference_answer/*"],
        )
    except Exception as exc:  # offline, not found, gated: all one message for the user
        raise UserError(f"MT-Bench data: hub dataset {dataset_id}: {exc}") from None
    return Path(folder)


def _resolve_dir(data: str | os.PathLike | None) -> Path:
    if data is None:
        folder = default_data_dir()
        if folder is None:
            raise UserError(
                f"no MT-Bench data: pass --data (a folder with FastChat's {QUESTION_FILE}, "
                f"{JUDGE_PROMPTS_FILE} and {REFERENCE_FILE}, or a hub dataset id) or set ${DATA_ENV}"
            )
        return folder
    text = str(data)
    if text.startswith("hub:"):
        return _hub_snapshot(text[len("hub:") :])
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return _hub_snapshot(text)
    raise UserError(f"MT-Bench data not found: {text} (a folder in FastChat's layout, or a hub dataset id)")


def load_data(
    data: str | os.PathLike | None = None, *, limit: int | None = None, mode: str = "single"
) -> MTBenchData:
    """Questions (the first ``limit``), the judge prompts ``mode`` needs and the reference answers, from a
    folder in FastChat's ``data/mt_bench`` layout or a hub dataset holding the same files. Everything is
    checked before any model loads: a malformed question, a missing judge prompt or a missing reference for
    a math/reasoning/coding question is a :class:`UserError` naming it."""
    folder = _resolve_dir(data)
    for name in (QUESTION_FILE, JUDGE_PROMPTS_FILE):
        if not (folder / name).is_file():
            raise UserError(f"MT-Bench data {folder}: no {name}")
    questions = []
    for i, q in enumerate(read_jsonl(folder / QUESTION_FILE, torn_ok=False)):
        where = f"{folder / QUESTION_FILE}: question {i + 1}"
        if not isinstance(q.get("question_id"), int) or not isinstance(q.get("category"), str):
            raise UserError(f"{where}: needs an integer 'question_id' and a 'category'")
        turns = q.get("turns")
        if not isinstance(turns, list) or len(turns) != 2 or not all(isinstance(t, str) for t in turns):
            raise UserError(f"{where} (id {q['question_id']}): 'turns' must be two strings")
        questions.append(q)
    ids = [q["question_id"] for q in questions]
    if len(set(ids)) != len(ids):
        raise UserError(f"{folder / QUESTION_FILE}: a question_id appears twice")
    questions = questions[:limit] if limit else questions
    if not questions:
        raise UserError(f"{folder / QUESTION_FILE}: no questions")

    prompts = {p.get("name"): p for p in read_jsonl(folder / JUDGE_PROMPTS_FILE, torn_ok=False)}
    needed = {name for (m, _, _), name in JUDGE_PROMPTS.items() if m == mode}
    missing = sorted(needed - set(prompts))
    if missing:
        raise UserError(f"{folder / JUDGE_PROMPTS_FILE}: no judge prompt named {', '.join(missing)}")
    _check_judge_prompts(prompts, mode, folder / JUDGE_PROMPTS_FILE)

    references: dict[int, list[str]] = {}
    if (folder / REFERENCE_FILE).is_file():
        for rec in read_jsonl(folder / REFERENCE_FILE, torn_ok=False):
            references[rec.get("question_id")] = _answer_turns(rec, folder / REFERENCE_FILE)
    lacking = [
        q["question_id"] for q in questions if _needs_reference(q) and q["question_id"] not in references
    ]
    if lacking:
        raise UserError(
            f"MT-Bench data {folder}: no reference answer ({REFERENCE_FILE}) for question(s) "
            f"{', '.join(map(str, lacking))}, whose category is judged against one"
        )
    return MTBenchData(questions=questions, judge_prompts=prompts, references=references, source=str(folder))


def _check_judge_prompts(prompts: dict[str, dict], mode: str, path: Path) -> None:
    """Render every judge prompt ``mode`` uses once with stand-in text, so a template with an unknown
    ``{placeholder}`` (or no ``prompt_template``) is refused before any answer is generated or judged."""
    question, answer, reference = {"turns": ["q1", "q2"]}, ["a1", "a2"], ["r1", "r2"]
    for (m, with_reference, turn), name in JUDGE_PROMPTS.items():
        if m != mode:
            continue
        template = prompts[name]
        if not isinstance(template.get("prompt_template"), str):
            raise UserError(f"{path}: judge prompt '{name}': needs a string 'prompt_template'")
        ref = reference if with_reference else None
        try:
            if mode == "single":
                render_single(template, question, answer, turn, ref)
            else:
                render_pair(template, question, answer, answer, turn, ref)
        except KeyError as exc:
            raise UserError(
                f"{path}: judge prompt '{name}': unknown placeholder {{{exc.args[0]}}} in its prompt_template"
            ) from None
        except (IndexError, ValueError) as exc:
            raise UserError(f"{path}: judge prompt '{name}': bad prompt_template ({exc})") from None


def _needs_reference(question: dict) -> bool:
    return question["category"] in NEED_REFERENCE


def _answer_turns(record: dict, where: Path | str) -> list[str]:
    """The turns of a FastChat answer record (its first choice)."""
    try:
        turns = record["choices"][0]["turns"]
    except (KeyError, IndexError, TypeError):
        raise UserError(
            f"{where}: question {record.get('question_id')}: not a FastChat answer (choices[0].turns)"
        ) from None
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
        raise UserError(f"{where}: question {record.get('question_id')}: turns must be strings")
    return turns


def question_temperature(category: str) -> float:
    return TEMPERATURES.get(category, DEFAULT_TEMPERATURE)


# ---------------------------------------------------------------------------------------------- prompts


def judge_prompt_name(question: dict, turn: int, mode: str = "single") -> str:
    return JUDGE_PROMPTS[(mode, _needs_reference(question), turn)]


def _reference_fields(reference: Sequence[str] | None, turn: int) -> dict[str, str]:
    """The reference answer's template fields: turn 1's, plus turn 2's for a multi-turn prompt."""
    if reference is None:
        return {}
    return {"ref_answer_1": reference[0], **({"ref_answer_2": reference[1]} if turn == 2 else {})}


def render_single(
    template: dict, question: dict, answer: Sequence[str], turn: int, reference: Sequence[str] | None
) -> str:
    """The judge's user prompt for one answer's turn ``turn``, as FastChat's ``run_judge_single`` builds it."""
    kwargs = _reference_fields(reference, turn)
    if turn == 2:
        return template["prompt_template"].format(
            question_1=question["turns"][0],
            question_2=question["turns"][1],
            answer_1=answer[0],
            answer_2=answer[1],
            **kwargs,
        )
    return template["prompt_template"].format(question=question["turns"][0], answer=answer[0], **kwargs)


def render_pair(
    template: dict,
    question: dict,
    answer_a: Sequence[str],
    answer_b: Sequence[str],
    turn: int,
    reference: Sequence[str] | None,
) -> str:
    """The judge's user prompt comparing answers A and B, as FastChat's ``run_judge_pair`` builds it."""
    kwargs = _reference_fields(reference, turn)
    if turn == 2:
        return template["prompt_template"].format(
            question_1=question["turns"][0],
            question_2=question["turns"][1],
            answer_a_1=answer_a[0],
            answer_b_1=answer_b[0],
            answer_a_2=answer_a[1],
            answer_b_2=answer_b[1],
            **kwargs,
        )
    return template["prompt_template"].format(
        question=question["turns"][0], answer_a=answer_a[0], answer_b=answer_b[0], **kwargs
    )


def judge_messages(template: dict, user_prompt: str) -> list[dict]:
    """FastChat's judge conversation: the template's system prompt, then the rendered prompt."""
    return [
        {"role": "system", "content": template["system_prompt"]},
        {"role": "user", "content": user_prompt},
    ]


def parse_rating(judgment: str) -> float:
    """The first ``[[x]]`` in the judgment, else the first ``[x]``; −1 when there is neither (FastChat)."""
    match = _RATING.search(judgment) or _RATING_FALLBACK.search(judgment)
    if not match:
        return -1
    value = float(match.group(1))
    return int(value) if value.is_integer() and "." not in match.group(1) else value


def parse_verdict(judgment: str) -> str:
    """``A``, ``B``, ``tie`` (``[[C]]``) or ``error``: the first of ``[[A]]``, ``[[B]]``, ``[[C]]`` checked in that
    order, as FastChat does."""
    for mark, verdict in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if mark in judgment:
            return verdict
    return "error"


# -------------------------------------------------------------------------------------------- scoring


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_single(judgments: Sequence[dict], categories: dict[int, str], model: str) -> dict[str, Any]:
    """Turn-1, turn-2 and overall means and per-category means (both turns) of ``model``'s valid judgments
    (score != −1) of the questions in ``categories``; counts of judgments and of unparseable ones."""
    rows = [j for j in judgments if j["model"] == model and j["question_id"] in categories]
    valid = [j for j in rows if j["score"] != -1]
    by_category: dict[str, list[float]] = {}
    for j in valid:
        by_category.setdefault(categories[j["question_id"]], []).append(j["score"])
    order = list(dict.fromkeys(categories.values()))
    return {
        "turn_1": _mean([j["score"] for j in valid if j["turn"] == 1]),
        "turn_2": _mean([j["score"] for j in valid if j["turn"] == 2]),
        "overall": _mean([j["score"] for j in valid]),
        "categories": {c: _mean(by_category.get(c, [])) for c in order},
        "counts": {
            "expected": 2 * len(categories),
            "judged": len(rows),
            "valid": len(valid),
            "unparseable": len(rows) - len(valid),
            "missing": 2 * len(categories) - len(rows),
        },
    }


def pair_outcome(judgment: dict) -> str:
    """``win`` / ``loss`` / ``tie`` for ``model_1``, or ``dropped``: FastChat's ``show_result.py`` drops a game
    with an ``error`` verdict in either order; otherwise both orders must name the same model, and anything
    else (disagreement, a tie) is a tie."""
    g1, g2 = judgment["g1_winner"], judgment["g2_winner"]
    if "error" in (g1, g2):
        return "dropped"
    if g1 == g2 and g1 in ("model_1", "model_2"):
        return "win" if g1 == "model_1" else "loss"
    return "tie"


def summarize_pairwise(judgments: Sequence[dict], categories: dict[int, str], model: str) -> dict[str, Any]:
    """Win / loss / tie counts and rates per turn, overall and per category (adjusted win rate), over the
    games :func:`pair_outcome` keeps; ``counts.dropped``: games dropped for an unparseable verdict."""
    written = [j for j in judgments if j["model_1"] == model and j["question_id"] in categories]
    rows = [j for j in written if pair_outcome(j) != "dropped"]

    def rates(subset: Sequence[dict]) -> dict[str, Any]:
        outcomes = [pair_outcome(j) for j in subset]
        n = len(outcomes)
        wins, losses, ties = (outcomes.count(k) for k in ("win", "loss", "tie"))
        return {
            "judged": n,
            "win": wins,
            "loss": losses,
            "tie": ties,
            "win_rate": wins / n if n else None,
            "win_rate_adjusted": (wins + ties / 2) / n if n else None,
        }

    order = list(dict.fromkeys(categories.values()))
    return {
        "baseline": written[0]["model_2"] if written else None,
        "turn_1": rates([j for j in rows if j["turn"] == 1]),
        "turn_2": rates([j for j in rows if j["turn"] == 2]),
        "overall": rates(rows),
        "categories": {
            c: rates([j for j in rows if categories[j["question_id"]] == c])["win_rate_adjusted"]
            for c in order
        },
        "counts": {
            "expected": 2 * len(categories),
            "judged": len(written),
            "dropped": len(written) - len(rows),
            "missing": 2 * len(categories) - len(written),
        },
    }


# -------------------------------------------------------------------------------------------- running


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate_answers(
    policy,
    questions: Sequence[dict],
    path: Path,
    model_id: str,
    settings: MTBenchSettings,
    *,
    chunk: int = 16,
) -> dict[int, list[str]]:
    """Both turns of every question not yet in ``path`` (FastChat's answer file), appended as each chunk of
    questions finishes; returns all answers (previous ones included) by question id. Questions are grouped
    by sampling temperature, since a backend call has one temperature."""
    answers = {r["question_id"]: _answer_turns(r, path) for r in (read_jsonl(path) if path.is_file() else [])}
    todo = [q for q in questions if q["question_id"] not in answers]
    if not todo:
        return answers
    log.info(f"mt-bench: {model_id} answers {len(todo)} questions (2 turns)")
    system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
    by_temperature: dict[float, list[dict]] = {}
    for q in todo:
        by_temperature.setdefault(question_temperature(q["category"]), []).append(q)
    out = JsonlAppender(path)
    try:
        for temperature, group in by_temperature.items():
            for part in _chunks(group, chunk):
                first = _chat(
                    policy,
                    [[*system, {"role": "user", "content": q["turns"][0]}] for q in part],
                    temperature,
                    settings.max_new_tokens,
                    "answers, turn 1",
                )
                second = _chat(
                    policy,
                    [
                        [
                            *system,
                            {"role": "user", "content": q["turns"][0]},
                            {"role": "assistant", "content": a1},
                            {"role": "user", "content": q["turns"][1]},
                        ]
                        for q, a1 in zip(part, first)
                    ],
                    temperature,
                    settings.max_new_tokens,
                    "answers, turn 2",
                )
                for q, a1, a2 in zip(part, first, second):
                    turns = [a1, a2]
                    answers[q["question_id"]] = turns
                    out.write(
                        {
                            "question_id": q["question_id"],
                            "answer_id": uuid.uuid4().hex[:22],
                            "model_id": model_id,
                            "choices": [{"index": 0, "turns": turns}],
                            "tstamp": time.time(),
                        }
                    )
    finally:
        out.close()
    return answers


def _chat(backend, conversations: list[list[dict]], temperature: float, max_new_tokens: int, desc: str):
    """Replies, stripped as FastChat strips them; a policy request that failed for good stops the run (the
    answers done so far are kept and the next run continues from them)."""
    replies = backend.chat(conversations, temperature=temperature, max_new_tokens=max_new_tokens, desc=desc)
    if any(r is None for r in replies):
        failed = sum(r is None for r in replies)
        raise IncompleteRun(f"mt-bench: {failed} policy request(s) failed; rerun the same command to resume")
    return [r.strip() for r in replies]


@dataclass
class _JudgeTask:
    key: tuple
    messages: list[dict]
    finish: Callable[[str], dict]


def _single_tasks(
    data: MTBenchData, answers: dict[int, list[str]], model_id: str, judge_id: str, done: set
) -> list[_JudgeTask]:
    tasks = []
    for q in data.questions:
        for turn in (1, 2):
            name = judge_prompt_name(q, turn)
            key = (q["question_id"], model_id, turn, name)
            if key in done:
                continue
            template = data.judge_prompts[name]
            ref = data.references.get(q["question_id"]) if _needs_reference(q) else None
            prompt = render_single(template, q, answers[q["question_id"]], turn, ref)

            def finish(judgment: str, q=q, turn=turn, name=name, prompt=prompt) -> dict:
                return {
                    "question_id": q["question_id"],
                    "model": model_id,
                    "judge": [judge_id, name],
                    "user_prompt": prompt,
                    "judgment": judgment,
                    "score": parse_rating(judgment),
                    "turn": turn,
                    "tstamp": time.time(),
                }

            tasks.append(_JudgeTask(key, judge_messages(template, prompt), finish))
    return tasks


def _pair_tasks(
    data: MTBenchData,
    answers: dict[int, list[str]],
    baseline: dict[int, list[str]],
    model_id: str,
    baseline_id: str,
    judge_id: str,
    done: set,
) -> list[_JudgeTask]:
    """Two judge calls per (question, turn): the model as A, then as B. The record is written once both
    orders are judged; a lone finished order is kept in memory only (the next run redoes that pair)."""
    tasks = []
    for q in data.questions:
        for turn in (1, 2):
            name = judge_prompt_name(q, turn, "pairwise")
            key = (q["question_id"], model_id, baseline_id, turn)
            if key in done:
                continue
            template = data.judge_prompts[name]
            ref = data.references.get(q["question_id"]) if _needs_reference(q) else None
            mine, theirs = answers[q["question_id"]], baseline[q["question_id"]]
            g1 = render_pair(template, q, mine, theirs, turn, ref)
            g2 = render_pair(template, q, theirs, mine, turn, ref)
            pending: dict[str, str] = {}

            def finish(judgment: str, order: str, q=q, turn=turn, name=name, g1=g1, g2=g2, pending=pending):
                pending[order] = judgment
                if len(pending) < 2:
                    return None
                v1, v2 = parse_verdict(pending["g1"]), parse_verdict(pending["g2"])
                return {
                    "question_id": q["question_id"],
                    "model_1": model_id,
                    "model_2": baseline_id,
                    "g1_winner": {"A": "model_1", "B": "model_2"}.get(v1, v1),
                    "g2_winner": {"A": "model_2", "B": "model_1"}.get(v2, v2),
                    "judge": [judge_id, name],
                    "g1_user_prompt": g1,
                    "g1_judgment": pending["g1"],
                    "g2_user_prompt": g2,
                    "g2_judgment": pending["g2"],
                    "turn": turn,
                    "tstamp": time.time(),
                }

            for order, prompt in (("g1", g1), ("g2", g2)):
                tasks.append(
                    _JudgeTask(key, judge_messages(template, prompt), lambda j, o=order, f=finish: f(j, o))
                )
    return tasks


def run_judge(judge, tasks: Sequence[_JudgeTask], path: Path, max_new_tokens: int) -> int:
    """Send ``tasks`` to the judge at temperature 0, appending each finished record to ``path``; returns the
    number of requests that failed for good (not written: the next run retries them)."""
    if not tasks:
        return 0
    out = JsonlAppender(path)

    def on_result(index: int, judgment: str) -> None:
        record = tasks[index].finish(judgment)
        if record is not None:
            out.write(record)

    try:
        replies = judge.chat(
            [t.messages for t in tasks],
            temperature=0.0,
            max_new_tokens=max_new_tokens,
            on_result=on_result,
            desc="judging",
        )
    finally:
        out.close()
    return sum(r is None for r in replies)


def load_baseline(path: str | os.PathLike) -> tuple[str, dict[int, list[str]]]:
    """``(model_id, answers)`` from a FastChat answer file or a folder written by ``eval mt-bench``."""
    p = Path(path).expanduser()
    if p.is_dir():
        run = p / RUN_FILE
        if not run.is_file():
            raise UserError(f"--baseline {p}: no {RUN_FILE} (a folder written by `posttrain eval mt-bench`)")
        model_id = json.loads(run.read_text())["model_id"]
        p = p / ANSWER_DIR / f"{model_id}.jsonl"
    if not p.is_file():
        raise UserError(f"--baseline {path}: no such answer file")
    records = read_jsonl(p)
    if not records:
        raise UserError(f"--baseline {p}: no answers")
    model_id = str(records[0].get("model_id") or p.stem)
    return model_id, {r["question_id"]: _answer_turns(r, p) for r in records}


def evaluate_mt_bench(
    model: str,
    judge: str,
    *,
    out_dir: str | os.PathLike,
    settings: MTBenchSettings | None = None,
    data: str | os.PathLike | None = None,
    baseline: str | os.PathLike | None = None,
    model_id: str | None = None,
    policy_options: dict | None = None,
    judge_options: dict | None = None,
    compare: Sequence[str | os.PathLike] = (),
    overwrite: bool = False,
    policy=None,
    judge_backend=None,
) -> dict[str, Any]:
    """Answer, judge and score ``model`` with ``judge`` (each: a model name/path/alias, or an http(s)
    OpenAI-compatible URL; see :func:`posttrain.chat_backends.build_chat_backend`, which receives
    ``policy_options`` / ``judge_options``). Reruns resume from ``out_dir``. Returns the results written to
    ``results.json``. ``policy`` / ``judge_backend``: ready backends (tests; otherwise built here, and only
    when there is work for them)."""
    settings = settings or MTBenchSettings()
    settings.check()
    if settings.mode == "pairwise" and baseline is None:
        raise UserError("--mode pairwise needs --baseline (answers of the model to compare against)")
    bench = load_data(data, limit=settings.limit, mode=settings.mode)
    baseline_id, baseline_answers = load_baseline(baseline) if baseline is not None else (None, {})
    if settings.mode == "pairwise":
        lacking = [q["question_id"] for q in bench.questions if q["question_id"] not in baseline_answers]
        if lacking:
            raise UserError(f"--baseline: no answer for question(s) {', '.join(map(str, lacking[:10]))}")
    others = [load_results(d) for d in compare]
    policy_options, judge_options = dict(policy_options or {}), dict(judge_options or {})
    model_id = safe_id(model_id) if model_id else model_id_for(model)
    judge_id = (
        safe_id(judge_options.get("api_model") or "") if judge.startswith("http") else model_id_for(judge)
    )
    judge_id = judge_id or "judge"
    out = Path(out_dir)
    run = {
        "model": model,
        "model_id": model_id,
        "judge": judge,
        "judge_id": judge_id,
        "mode": settings.mode,
        "baseline": baseline_id,
        "settings": asdict(settings),
        "data": bench.source,
    }
    stale = [f for sub in (ANSWER_DIR, JUDGMENT_DIR) for f in (out / sub).glob("*.jsonl")]
    start_run(out, run, overwrite=overwrite, outputs=stale)
    answer_file = out / ANSWER_DIR / f"{model_id}.jsonl"
    judgment_file = (
        out / JUDGMENT_DIR / f"{judge_id}_{'single' if settings.mode == 'single' else 'pair'}.jsonl"
    )

    written = {r["question_id"] for r in read_jsonl(answer_file)} if answer_file.is_file() else set()
    if policy is None and any(q["question_id"] not in written for q in bench.questions):
        policy = build_chat_backend(model, seed=settings.seed, **policy_options)
    answers = generate_answers(policy, bench.questions, answer_file, model_id, settings)
    _sort_answers(answer_file)

    previous = read_jsonl(judgment_file) if judgment_file.is_file() else []
    if settings.mode == "single":
        done = {(j["question_id"], j["model"], j["turn"], j["judge"][1]) for j in previous}
        tasks = _single_tasks(bench, answers, model_id, judge_id, done)
    else:
        done = {(j["question_id"], j["model_1"], j["model_2"], j["turn"]) for j in previous}
        tasks = _pair_tasks(bench, answers, baseline_answers, model_id, baseline_id, judge_id, done)
    failed = 0
    if tasks:
        if judge_backend is None:
            # one model as policy and judge (a quick self-check): load it once
            same = judge == model and judge_options == policy_options and policy is not None
            judge_backend = policy if same else build_chat_backend(judge, seed=settings.seed, **judge_options)
        log.info(f"mt-bench: {judge_id} judges {len(tasks)} prompts")
        failed = run_judge(judge_backend, tasks, judgment_file, settings.judge_max_new_tokens)

    categories = {q["question_id"]: q["category"] for q in bench.questions}
    judgments = read_jsonl(judgment_file) if judgment_file.is_file() else []
    summary = (summarize_single if settings.mode == "single" else summarize_pairwise)(
        judgments, categories, model_id
    )
    results = {**run, "label": model_id, **summary, "failed_requests": failed}
    write_atomic(out / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
    plot_radar([results, *others], out / PLOT_FILE)
    return results


def _sort_answers(path: Path) -> None:
    """FastChat's ``reorg_answer_file``: one answer per question, sorted by id (the first one kept)."""
    if not path.is_file():
        return
    by_id: dict[int, dict] = {}
    for r in read_jsonl(path):
        by_id.setdefault(r["question_id"], r)
    write_atomic(path, "".join(json.dumps(by_id[k], ensure_ascii=False) + "\n" for k in sorted(by_id)))


# ------------------------------------------------------------------------------------------ reporting


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """``results.json`` of a result folder (or the file itself)."""
    return read_results(path, command="mt-bench", key="categories", kind="an MT-Bench result")


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def format_table(results: dict) -> str:
    """Categories then turn 1 / turn 2 / overall: mean score (single) or win rates (pairwise)."""
    counts = results["counts"]
    if results["mode"] == "single":
        header = ("MT-Bench", "score")
        groups = [
            [(c, _fmt(v)) for c, v in results["categories"].items()],
            [(k.replace("_", " "), _fmt(results[k])) for k in ("turn_1", "turn_2", "overall")],
        ]
        notes = (
            f"{counts['valid']} valid of {counts['expected']} judgments; {counts['unparseable']} unparseable "
            f"(score -1, excluded), {counts['missing']} missing"
        )
    else:
        header = ("vs " + str(results.get("baseline")), "win", "loss", "tie", "win rate", "adjusted")
        groups = [
            [(c, "", "", "", "", _fmt(v)) for c, v in results["categories"].items()],
            [
                (
                    k.replace("_", " "),
                    str(results[k]["win"]),
                    str(results[k]["loss"]),
                    str(results[k]["tie"]),
                    _fmt(results[k]["win_rate"]),
                    _fmt(results[k]["win_rate_adjusted"]),
                )
                for k in ("turn_1", "turn_2", "overall")
            ],
        ]
        notes = (
            f"{counts['judged']} of {counts['expected']} pairs judged in both orders; {counts['dropped']} "
            f"dropped (a verdict unparseable, as FastChat's show_result), {counts['missing']} missing"
        )
    title = f"{results.get('model_id')} judged by {results.get('judge_id')} ({results['mode']})"
    return "\n".join([title, *aligned_table(header, groups), notes])


def plot_radar(runs: Sequence[dict], path: str | os.PathLike) -> Path:
    """Per-category scores on a radar chart (0–10 for single grading, adjusted win rate 0–1 for pairwise),
    one polygon per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        raise UserError("nothing to plot")
    modes = {r["mode"] for r in runs}
    if len(modes) > 1:
        raise UserError("cannot draw single-grading and pairwise results on one chart")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = [str(r.get("label") or r.get("model_id")) for r in runs]
    labels = [f"{lab} ({i + 1})" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    usable = [any(v is not None for v in r["categories"].values()) for r in runs]
    if not any(usable):
        # nothing to draw: say so instead of an empty radar whose legend lists runs without values
        fig = plt.figure(figsize=(6.2, 2.2))
        lines = [f"MT-Bench: no usable judgments to chart ({', '.join(sorted(modes))} grading)"]
        lines += [f"{label}: {_counts_note(run)}" for run, label in zip(runs, labels)]
        fig.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", fontsize=9)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
    skipped = [label for label, ok in zip(labels, usable) if not ok]
    runs = [run for run, ok in zip(runs, usable) if ok]
    labels = [label for label, ok in zip(labels, usable) if ok]
    categories: list[str] = []
    for run in runs:
        categories += [c for c in run["categories"] if c not in categories]
    angles = [2 * math.pi * i / len(categories) for i in range(len(categories))]
    fig = plt.figure(figsize=(6.2, 5.6))
    ax = fig.add_subplot(polar=True)
    top = 10 if modes == {"single"} else 1
    for run, label in zip(runs, labels):
        values = [run["categories"].get(c) or 0 for c in categories]
        overall = run["overall"] if run["mode"] == "single" else run["overall"]["win_rate_adjusted"]
        closed_angles, closed_values = [*angles, angles[0]], [*values, values[0]]
        ax.plot(closed_angles, closed_values, linewidth=1.5, label=f"{label}: {_fmt(overall)}")
        ax.fill(closed_angles, closed_values, alpha=0.12)
    ax.set_xticks(angles)
    ax.set_xticklabels(categories, fontsize=9)
    ax.set_ylim(0, top)
    ax.tick_params(axis="y", labelsize=7)
    judges = {r.get("judge_id") for r in runs}
    what = "score (1-10)" if top == 10 else "adjusted win rate"
    ax.set_title(f"MT-Bench {what}, judge: {', '.join(sorted(map(str, judges)))}", fontsize=10, pad=18)
    ax.legend(loc="upper right", bbox_to_anchor=(1.32, 1.12), fontsize=8, frameon=False)
    if skipped:
        fig.text(0.01, 0.01, f"not drawn (no usable judgments): {', '.join(skipped)}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # the legend sits outside the axes: keep it whole
    plt.close(fig)
    return path


def _counts_note(run: dict) -> str:
    counts = run.get("counts", {})
    if run.get("mode") == "single":
        return (
            f"{counts.get('valid', 0)} valid of {counts.get('expected', '?')} judgments, "
            f"{counts.get('unparseable', 0)} unparseable, {counts.get('missing', 0)} missing"
        )
    return (
        f"{counts.get('judged', 0)} of {counts.get('expected', '?')} pairs judged, "
        f"{counts.get('dropped', 0)} dropped, {counts.get('missing', 0)} missing"
    )

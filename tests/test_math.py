"""Verifiable math for DRPO: correctness checks, the reward function, loaders, the evaluator and its CLI,
and the quickstart arithmetic data."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import ROOT, SHARED

from posttrain.cli import main
from posttrain.data.math import (
    BENCHMARKS,
    build_prompt,
    load_math_split,
    math_benchmark_records,
)
from posttrain.data.preference import DropReport
from posttrain.errors import UserError
from posttrain.evaluation.math_eval import (
    MathEvalSettings,
    evaluate_math,
    format_table,
    load_results,
    summarize,
)
from posttrain.generation import Generation, _finish
from posttrain.recipe import DataSource
from posttrain.rewards.math import (
    DRPO_SUFFIX,
    completion_text,
    extract_gsm8k_answer,
    final_answer,
    is_correct,
    last_boxed,
    math_correctness,
    math_correctness_lenient,
)
from posttrain.rewards.registry import resolve_reward

DRPO_DATA = ROOT / "data" / "drpo"
GSM8K = SHARED / "datasets" / "gsm8k"
MATH_TRAIN = SHARED / "datasets" / "math" / "train.json"
BENCH_DIR = SHARED / "benchmarks" / "math"
needs_shared = pytest.mark.skipif(
    not (GSM8K.is_dir() and MATH_TRAIN.is_file() and BENCH_DIR.is_dir()),
    reason=f"the shared math data is absent ({SHARED}/datasets/{{gsm8k,math}}, {SHARED}/benchmarks/math)",
)


def write_json(path: Path, records) -> Path:
    path.write_text(json.dumps(records))
    return path


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------ correctness


# (completion, gold, truncated, strict, lenient): the strict grader is the default (official DRPO reward),
# the lenient one the opt-in math_correctness_lenient.
GRADING = [
    # equivalent forms
    ("12 + 7 = 19. So the answer is \\boxed{19}.", "19", False, True, True),
    ("\\boxed{20}", "19", False, False, False),
    ("The answer is $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}", False, True, True),
    ("The answer is \\boxed{0.5}", "\\frac{1}{2}", False, True, True),  # fraction = decimal
    ("\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}", False, True, True),
    ("\\boxed{4.67}", "\\frac{14}{3}", False, False, False),
    ("\\boxed{70,000}", "70000", False, True, True),
    ("\\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)", False, True, True),
    ("\\boxed{p-q}", "p - q", False, True, True),
    ("\\boxed{25}", "025", False, True, True),  # AIME golds carry leading zeros
    ("\\boxed{142}", 142.0, False, True, True),  # AMC golds are JSON floats
    ("\\boxed{70}", 70, False, True, True),
    ("\\boxed{9.6}", ["9.6\n", "9.60"], False, True, True),  # Minerva lists variants
    ("\\boxed{9.7}", ["9.6\n", "9.60"], False, False, False),
    ("\\boxed 7", "7", False, True, True),
    ("\\fbox{7}", "7", False, True, True),
    # several boxes: the last one is the answer
    ("First \\boxed{3}, no wait, \\boxed{5}", "5", False, True, True),
    ("First \\boxed{5}, no wait, \\boxed{3}", "5", False, False, False),
    # boxed, then the text goes on: the box still stands (the official reward reads the last box)
    ("So \\boxed{144}. Let me double-check: 12*12 = 144.", "144", False, True, True),
    ("So \\boxed{144}. Let me double-check: 12*12 = 145.", "145", False, False, False),
    # unfinished: no final answer, only a last number that matches
    ("12*12 = 144. Let me double-check: 144", "144", False, False, True),
    ("Tom has 12 + 7 = 19 apples.", "19", False, False, True),
    ("So x = 1/2", "0.5", False, False, True),
    ("Tom has 19 apples, or maybe 21.", "19", False, False, False),
    # truncated at the length limit: wrong even with a box before the cut (strict)
    ("\\boxed{19}. Now let us verify by another", "19", True, False, True),
    ("\\boxed{19", "19", True, False, False),  # the box itself cut off
    ("\\boxed{19", "19", False, False, False),
    # GSM8K's marker: #### or boxed, whichever comes last
    ("She makes 9 * 2 = 18 dollars.\n#### 18", "18", False, True, True),
    ("#### 2,125", "2125", False, True, True),
    ("\\boxed{17} but recounting\n#### 18", "18", False, True, False),
    ("#### 17\nso finally \\boxed{18}", "18", False, True, True),
    ("#### ", "18", False, False, False),
    # thinking models: the answer is read after </think>
    ("<think>maybe \\boxed{4}? no, 5</think>The answer is \\boxed{5}.", "5", False, True, True),
    ("<think>maybe \\boxed{4}? no, 5</think>The answer is \\boxed{5}.", "4", False, False, False),
    ("<think>so it is \\boxed{5}</think>The answer is 5.", "5", False, False, True),  # box only in thought
    ("Wait, 2+3 = 5.</think>\n\\boxed{5}", "5", False, True, True),  # template opened <think>
    ("<think>2+3 = 5, so \\boxed{5}", "5", False, False, True),  # never left its reasoning
    # garbage and empties
    ("", "19", False, False, False),
    ("   ", "19", False, False, False),
    ("I don't know.", "19", False, False, False),
    ("}}}{{ \\boxed{ $$ \\frac{", "3", False, False, False),
    ("\\boxed{}", "3", False, False, False),
    ("x" * 50000 + " \\boxed{3}", "3", False, True, True),
    ("\\boxed{3}", "", False, False, False),  # an empty gold matches nothing
]


@pytest.mark.parametrize(("completion", "gold", "truncated", "strict", "lenient"), GRADING)
def test_is_correct(completion, gold, truncated, strict, lenient):
    assert is_correct(completion, gold, truncated=truncated) is strict
    assert is_correct(completion, gold, truncated=truncated, lenient=True) is lenient


def test_reward_functions_agree_with_the_table():
    """math_correctness (the default reward) is the strict grader, math_correctness_lenient the lenient one,
    both reading TRL's per-completion ``truncated`` column."""
    completions, golds, cut, strict, lenient = (list(col) for col in zip(*GRADING))
    assert math_correctness(None, completions, golds, truncated=cut) == [float(x) for x in strict]
    assert math_correctness_lenient(None, completions, golds, truncated=cut) == [float(x) for x in lenient]
    assert resolve_reward("math_correctness") is math_correctness
    assert resolve_reward("math_correctness_lenient") is math_correctness_lenient
    with pytest.raises(ValueError, match="2 completions but 1 truncation flags"):
        math_correctness(None, ["a", "b"], ["1", "1"], truncated=[True])


def test_final_answer():
    assert final_answer("a \\boxed{3} then #### 1,234\nbye") == "1234"
    assert final_answer("\\boxed{5} ####") == "5"
    assert final_answer("<think>\\boxed{4}</think> so \\boxed{5}") == "5"
    assert final_answer("<think> \\boxed{4}") is None
    assert final_answer("the answer is 5") is None


def test_is_correct_never_raises_on_odd_input():
    assert is_correct(None, "3") is False  # type: ignore[arg-type]
    assert is_correct("\\boxed{3}", None) is False  # type: ignore[arg-type]
    assert is_correct("\\boxed{\\frac{1}{0}}", "1") is False
    assert is_correct("\\boxed{" + "(" * 20 + "}", "1") is False
    assert is_correct("\\boxed{\\sqrt{}^{}_{}}", "2") is False


def test_is_correct_off_the_main_thread():
    """math-verify's signal timeouts fail outside the main thread; the check must still work there."""
    cases = [("\\boxed{0.5}", "\\frac{1}{2}"), ("\\boxed{4}", "5"), ("the answer is \\boxed{19}", "19")]
    expected = [is_correct(c, g) for c, g in cases]
    assert expected == [True, False, True]
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda cg: is_correct(*cg), cases)) == expected
    seen = []
    thread = threading.Thread(target=lambda: seen.append(math_correctness(None, ["\\boxed{2}"], ["2"])))
    thread.start()
    thread.join()
    assert seen == [[1.0]]


def test_last_boxed_and_gsm8k_answer():
    assert last_boxed("a \\boxed{\\frac{1}{2}} b \\boxed{x^{2}+1}") == "x^{2}+1"
    assert last_boxed("\\fbox{7}") == "7"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{unclosed") is None
    assert extract_gsm8k_answer("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18") == "18"
    assert extract_gsm8k_answer("... \n#### 2,125 \n") == "2125"
    assert extract_gsm8k_answer("#### -3") == "-3"
    with pytest.raises(ValueError, match="####"):
        extract_gsm8k_answer("The answer is 18.")
    with pytest.raises(ValueError, match="nothing after"):
        extract_gsm8k_answer("steps\n####  ")


def test_completion_text():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "\\boxed{3}"}]) == "\\boxed{3}"
    two_turns = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert completion_text(two_turns) == "a\nb"
    assert completion_text(None) == ""


def test_reward_function_trl_signature():
    prompts = [[{"role": "user", "content": "What is 1 + 1?"}]] * 4
    completions = [
        [{"role": "assistant", "content": "1 + 1 = 2, so \\boxed{2}."}],
        [{"role": "assistant", "content": "\\boxed{3}"}],
        "The answer is \\boxed{2}",
        [{"role": "assistant", "content": ""}],
    ]
    rewards = math_correctness(
        prompts=prompts,
        completions=completions,
        answer=["2", "2", "2", "2"],
        completion_ids=[[1, 2]] * 4,
        trainer_state=None,
        log_extra=lambda *a, **k: None,
        log_metric=lambda *a, **k: None,
        type=["add"] * 4,  # any other dataset column
    )
    assert rewards == [1.0, 0.0, 1.0, 0.0]
    assert all(isinstance(r, float) for r in rewards)
    # an `answers` column (several acceptable golds) wins over `answer` where it is non-empty
    several = math_correctness(
        None, ["\\boxed{9.60}", "\\boxed{1}"], ["9.6", "1"], answers=[["9.6", "9.60"], []]
    )
    assert several == [1.0, 1.0]
    with pytest.raises(ValueError, match="2 completions but 1 gold"):
        math_correctness(None, ["a", "b"], ["1"])


# ---------------------------------------------------------------------------------------------- loaders


def test_load_math_split_math_format(tmp_path):
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"problem": "What is 1 + 1?", "answer": "2", "solution": "..."},
            {"problem": "Half of 1?", "answer": "\\frac{1}{2}"},
            {"problem": "AMC", "answer": 142.0},
        ],
    )
    ds = load_math_split(DataSource(path=str(path), format="math"))
    assert ds.column_names == ["prompt", "answer"]
    assert ds["answer"] == ["2", "\\frac{1}{2}", "142"]
    assert ds[0]["prompt"] == [{"role": "user", "content": f"What is 1 + 1? {DRPO_SUFFIX}"}]

    ds = load_math_split(DataSource(path=str(path), limit=2), suffix=None, system_prompt="Be brief.")
    assert len(ds) == 2
    assert ds[1]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Half of 1?"},
    ]


def test_load_math_split_gsm8k_format_and_auto(tmp_path):
    records = [
        {"question": "Tom has 2 and buys 3. How many?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"},
        {"question": "Big?", "answer": "...\n#### 1,250"},
    ]
    path = write_jsonl(tmp_path / "g.jsonl", records)
    for fmt in ("gsm8k", "auto"):
        ds = load_math_split(DataSource(path=str(path), format=fmt), suffix="Answer in \\boxed{}.")
        assert ds["answer"] == ["5", "1250"]
        assert ds[0]["prompt"][0]["content"] == "Tom has 2 and buys 3. How many? Answer in \\boxed{}."


def test_load_math_split_several_answers_and_drops(tmp_path):
    path = write_json(
        tmp_path / "minerva.json",
        [
            {"problem": "p1", "answer": ["9.6\n", "9.60"]},
            {"problem": "p2", "answer": ["7"]},
            {"problem": "p3", "answer": None},  # unlabeled: dropped and counted
            {"problem": "p4", "answer": ""},
        ],
    )
    report = DropReport(source="")
    ds = load_math_split(DataSource(path=str(path)), report=report)
    assert ds["answer"] == ["9.6", "7"]
    assert ds["answers"] == [["9.6", "9.60"], []]
    assert (report.read, report.kept, dict(report.dropped)) == (4, 2, {"empty 'answer'": 2})
    assert "2/4 records kept" in report.summary()
    rewards = math_correctness(None, ["\\boxed{9.60}", "\\boxed{7}"], ds["answer"], answers=ds["answers"])
    assert rewards == [1.0, 1.0]


@pytest.mark.parametrize(
    ("records", "fmt", "message"),
    [
        ([{"problem": "p", "answer": "1"}, {"problem": "q"}], "math", r"record 2: missing field 'answer'"),
        ([{"problem": "p", "answer": "1"}, {"answer": "1"}], "math", r"record 2: missing field 'problem'"),
        ([{"question": "q", "answer": "no marker"}], "gsm8k", r"record 1: field 'answer': no '####'"),
        ([{"question": "q"}], "auto", r"record 1: missing field 'answer'"),
        ([{"prompt": "p", "chosen": "a"}], "auto", r"record 1: cannot detect a math format"),
        ([{"problem": "p", "answer": {"x": 1}}], "math", r"record 1: field 'answer'"),
        ([{"problem": 3, "answer": "1"}], "math", r"record 1: field 'problem' must be a string"),
        ([{"problem": "p", "answer": "1"}], "pairs", r"not a math format"),
        ([{"problem": "p", "answer": None}], "math", r"no usable records left"),
    ],
)
def test_load_math_split_errors(tmp_path, records, fmt, message):
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(UserError, match=message) as info:
        load_math_split(DataSource(path=str(path), format=fmt))
    assert "bad.jsonl" in str(info.value)


def test_benchmark_records(tmp_path, monkeypatch):
    write_json(tmp_path / "gsm8k.json", [{"problem": f"p{i}", "answer": str(i)} for i in range(5)])
    write_json(tmp_path / "mine.json", [{"problem": "q", "answer": 1}])
    assert [r["answer"] for r in math_benchmark_records("gsm8k", tmp_path, limit=3)] == ["0", "1", "2"]
    assert math_benchmark_records("mine", tmp_path) == [{"problem": "q", "answer": "1"}]  # any <name>.json
    gsm = write_jsonl(tmp_path / "test.jsonl", [{"question": "q", "answer": "#### 4"}])
    assert math_benchmark_records(str(gsm)) == [{"problem": "q", "answer": "4"}]  # a file path

    with pytest.raises(UserError, match=r"unknown benchmark 'gsm8' .*did you mean 'gsm8k'"):
        math_benchmark_records("gsm8", tmp_path)
    with pytest.raises(UserError, match=r"has no math500.json; pass --data-dir"):
        math_benchmark_records("math500", tmp_path)
    with pytest.raises(UserError, match="benchmark file not found"):
        math_benchmark_records(str(tmp_path / "missing.json"))
    monkeypatch.setattr("posttrain.data.math.default_benchmark_dir", lambda: None)
    with pytest.raises(UserError, match=r"no benchmark folder found; pass --data-dir"):
        math_benchmark_records("aime24")
    monkeypatch.undo()
    monkeypatch.setenv("POSTTRAIN_MATH_DATA", str(tmp_path))
    assert len(math_benchmark_records("gsm8k")) == 5  # the environment variable names the folder


@needs_shared
def test_shared_loaders():
    train = load_math_split(DataSource(path=str(GSM8K / "train.jsonl"), format="gsm8k", limit=50))
    assert len(train) == 50 and train[0]["answer"] == "72"
    test = load_math_split(DataSource(path=str(GSM8K / "test.jsonl")))
    assert len(test) == 1319 and test[0]["answer"] == "18"
    report = DropReport(source="")
    math_train = load_math_split(DataSource(path=str(MATH_TRAIN), format="math"), report=report)
    assert len(math_train) == 7470 and report.dropped == {"empty 'answer'": 4}  # 4 unlabeled in the source
    assert math_train[0]["answer"] == "0"
    sizes = {name: len(math_benchmark_records(name, BENCH_DIR)) for name in BENCHMARKS}
    assert sizes["gsm8k"] == 1319 and sizes["math500"] == 500 and sizes["aime24"] == 30
    assert all(n > 0 for n in sizes.values())
    # the benchmark copy of GSM8K agrees with the '####' answers of the original test split
    bench = math_benchmark_records("gsm8k", BENCH_DIR, limit=100)
    assert [r["answer"] for r in bench] == test["answer"][:100]


# -------------------------------------------------------------------------------------------- evaluator


def test_summarize_hand_built():
    rows = [
        # benchmark a: problem 0 → 2/2 correct, problem 1 → 0/2; pass@1 = (1 + 0) / 2
        {"benchmark": "a", "problem": 0, "sample": 0, "length": 10, "truncated": False, "correct": True},
        {"benchmark": "a", "problem": 0, "sample": 1, "length": 20, "truncated": False, "correct": True},
        {"benchmark": "a", "problem": 1, "sample": 0, "length": 30, "truncated": True, "correct": False},
        {"benchmark": "a", "problem": 1, "sample": 1, "length": 40, "truncated": False, "correct": False},
        # benchmark b: one problem, 1/2 correct
        {"benchmark": "b", "problem": 0, "sample": 0, "length": 5, "truncated": False, "correct": False},
        {"benchmark": "b", "problem": 0, "sample": 1, "length": 7, "truncated": False, "correct": True},
    ]
    res = summarize(rows)
    a, b = res["benchmarks"]["a"], res["benchmarks"]["b"]
    assert (a["problems"], a["samples_per_problem"], a["pass@1"]) == (2, 2, 0.5)
    assert (a["mean_length"], a["mean_length_correct"], a["mean_length_incorrect"]) == (25, 15, 35)
    assert a["truncated"] == 0.25
    assert (b["pass@1"], b["mean_length"], b["mean_length_correct"]) == (0.5, 6, 7)
    assert res["average"] == {"pass@1": 0.5, "mean_length": 15.5, "benchmarks": 2}
    none_right = summarize([{**rows[2], "benchmark": "c"}])["benchmarks"]["c"]
    assert none_right["pass@1"] == 0 and none_right["mean_length_correct"] is None


def test_finish_cuts_at_eos(tiny_tokenizer):
    ids = tiny_tokenizer("12 apples", add_special_tokens=False)["input_ids"]
    eos = tiny_tokenizer.eos_token_id
    done = _finish(tiny_tokenizer, [*ids, eos, eos], {eos}, hit_limit=True)
    assert (done.text, done.length, done.truncated) == ("12 apples", len(ids), False)
    cut = _finish(tiny_tokenizer, ids, {eos}, hit_limit=True)
    assert (cut.length, cut.truncated) == (len(ids), True)


def test_vllm_generator_with_a_stand_in(monkeypatch, tiny_model_dir, tiny_tokenizer):
    """The vLLM path's plumbing with a stand-in engine (fast; tests/test_vllm.py runs the real one): n=k, EOS
    cut, finish_reason, greedy."""
    import types

    from posttrain.generation import VLLMGenerator

    eos = tiny_tokenizer.eos_token_id
    seven = tiny_tokenizer("\\boxed{7}", add_special_tokens=False)["input_ids"]
    calls = {}

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs

        def generate(self, prompts, params):
            calls["params"], calls["prompts"] = params, prompts
            out = types.SimpleNamespace
            done, cut = (
                out(token_ids=[*seven, eos], finish_reason="stop"),
                out(token_ids=seven, finish_reason="length"),
            )
            return [out(outputs=[done, cut][: params.n]) for _ in prompts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    gen = VLLMGenerator(str(tiny_model_dir), tiny_tokenizer, seed=3)
    assert calls["llm"]["model"] == str(tiny_model_dir) and calls["llm"]["seed"] == 3
    result = gen.generate([[1, 2], [3]], MathEvalSettings(samples=2, temperature=0.6, max_new_tokens=5))
    assert calls["prompts"] == [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [3]}]
    assert (calls["params"].n, calls["params"].top_p, calls["params"].max_tokens) == (2, 0.95, 5)
    assert [[(g.text, g.length, g.truncated) for g in row] for row in result] == [
        [("\\boxed{7}", len(seven), False), ("\\boxed{7}", len(seven), True)]
    ] * 2
    greedy = gen.generate([[1]], MathEvalSettings(samples=3, temperature=0))
    assert calls["params"].n == 1 and len(greedy[0]) == 3


class FakeGenerator:
    """Sample 0 answers right, sample 1 wrong; lengths are the sample index + 3."""

    def __init__(self, tokenizer, golds_by_problem: dict[str, str]):
        self.tokenizer, self.golds, self.calls = tokenizer, golds_by_problem, 0

    def generate(self, prompt_ids, settings, desc=""):
        self.calls += 1
        out = []
        for ids in prompt_ids:
            text = self.tokenizer.decode(ids)
            gold = next(g for p, g in self.golds.items() if p in text)
            out.append(
                [
                    Generation(f"\\boxed{{{gold if s == 0 else 'nope'}}}", s + 3, s == 1)
                    for s in range(settings.samples)
                ]
            )
        return out


def test_evaluate_with_fake_generator(tmp_path, tiny_tokenizer):
    records = [{"problem": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(1, 4)]
    write_json(tmp_path / "gsm8k.json", records)
    write_jsonl(tmp_path / "other.jsonl", [{"question": "What is 9 minus 4?", "answer": "#### 5"}])
    fake = FakeGenerator(tiny_tokenizer, {r["problem"]: r["answer"] for r in records} | {"9 minus 4": "5"})
    out = tmp_path / "out"
    settings = MathEvalSettings(samples=2, max_new_tokens=8)
    res = evaluate_math(
        "fake",
        ["gsm8k", str(tmp_path / "other.jsonl")],
        settings=settings,
        data_dir=tmp_path,
        out_dir=out,
        generator=fake,
        progress=False,
    )
    gsm = res["benchmarks"]["gsm8k"]
    assert (gsm["problems"], gsm["pass@1"], gsm["mean_length"]) == (3, 0.5, 3.5)
    assert gsm["mean_length_correct"] == 3 and gsm["mean_length_incorrect"] == 4
    assert gsm["truncated"] == 0.5
    assert res["benchmarks"]["other"]["problems"] == 1
    assert res["average"]["pass@1"] == 0.5
    assert res["settings"]["samples"] == 2 and res["settings"]["suffix"] == DRPO_SUFFIX
    rows = read_jsonl(out / "samples.jsonl")
    assert len(rows) == 8
    assert rows[0] == {
        "benchmark": "gsm8k",
        "problem": 0,
        "sample": 0,
        "answer": "2",
        "completion": "\\boxed{2}",
        "length": 3,
        "truncated": False,
        "correct": True,
    }
    table = format_table(res)
    assert "average" in table and "50.0" in table

    # --resume: nothing left to generate, the same numbers come back
    class Refuses:
        tokenizer = tiny_tokenizer

        def generate(self, *a, **k):
            raise AssertionError("resume should not generate")

    again = evaluate_math(
        "fake",
        ["gsm8k", str(tmp_path / "other.jsonl")],
        settings=MathEvalSettings(samples=2, max_new_tokens=8),
        data_dir=tmp_path,
        out_dir=out,
        generator=Refuses(),
        resume=True,
        progress=False,
    )
    assert again["benchmarks"] == res["benchmarks"]
    with pytest.raises(UserError, match="other settings"):
        evaluate_math(
            "fake",
            ["gsm8k"],
            settings=MathEvalSettings(samples=3),
            data_dir=tmp_path,
            out_dir=out,
            generator=Refuses(),
            resume=True,
        )


def test_evaluate_grades_truncated_samples_wrong(tmp_path, tiny_tokenizer):
    """A sample cut at --max-new-tokens is wrong even when it boxed the right answer before the cut."""

    class CutGenerator:
        tokenizer = tiny_tokenizer

        def generate(self, prompt_ids, settings, desc=""):
            return [[Generation("\\boxed{4} and now", 8, True), Generation("\\boxed{4}", 3, False)]]

    res = evaluate_math(
        "fake",
        [str(write_json(tmp_path / "one.json", [{"problem": "What is 2 plus 2?", "answer": "4"}]))],
        settings=MathEvalSettings(samples=2, max_new_tokens=8),
        generator=CutGenerator(),
        progress=False,
    )
    one = res["benchmarks"]["one"]
    assert (one["pass@1"], one["truncated"], one["mean_length_correct"]) == (0.5, 0.5, 3)


@pytest.mark.integration
def test_eval_math_cli_end_to_end(tmp_path, tiny_model_dir, capsys):
    """The real HF path on the tiny random model: numbers in results.json = a recomputation from samples."""
    bench = tmp_path / "bench"
    bench.mkdir()
    records = [
        {"problem": "Tom has 12 apples and buys 7 more. How many apples does he have?", "answer": "19"},
        {"problem": "What is 3 + 4?", "answer": "7"},
        {"problem": "Half of one?", "answer": "\\frac{1}{2}"},
    ]
    write_json(bench / "gsm8k.json", records)
    out = tmp_path / "run"
    args = ["eval", "math", "--model", tiny_model_dir, "--benchmarks", "gsm8k", "--data-dir", bench]
    args += ["--samples", 2, "--max-new-tokens", 8, "--backend", "hf", "--batch-size", 4, "--out", out]
    code, stdout, stderr = run_cli([*args, "--label", "tiny"], capsys)
    assert code == 0, stderr
    assert {p.name for p in out.iterdir()} == {"results.json", "samples.jsonl", "math_eval.png", "run.json"}
    assert (out / "math_eval.png").stat().st_size > 1000
    assert "gsm8k" in stdout and "pass@1" in stdout

    results = json.loads((out / "results.json").read_text())
    rows = read_jsonl(out / "samples.jsonl")
    assert len(rows) == 6
    assert {(r["problem"], r["sample"]) for r in rows} == {(p, s) for p in range(3) for s in range(2)}
    for row in rows:
        assert 0 <= row["length"] <= 8
        gold = records[row["problem"]]["answer"]
        assert row["correct"] == is_correct(row["completion"], gold, truncated=row["truncated"])
        assert not row["truncated"] or row["length"] == 8
    per_problem = [[r["correct"] for r in rows if r["problem"] == p] for p in range(3)]
    gsm = results["benchmarks"]["gsm8k"]
    assert gsm["problems"] == 3 and gsm["samples_per_problem"] == 2
    assert gsm["pass@1"] == pytest.approx(sum(sum(c) / 2 for c in per_problem) / 3)
    assert gsm["mean_length"] == pytest.approx(sum(r["length"] for r in rows) / 6)
    assert gsm["truncated"] == pytest.approx(sum(r["truncated"] for r in rows) / 6)
    assert results["label"] == "tiny" and results["settings"]["max_new_tokens"] == 8

    # a second run on the same chart, then both through `eval math-plot`
    code, _, stderr = run_cli([*args[:-1], tmp_path / "run2", "--temperature", 0, "--plot", out], capsys)
    assert code == 0, stderr
    chart = tmp_path / "both.png"
    code, stdout, stderr = run_cli(["eval", "math-plot", out, tmp_path / "run2", "--out", chart], capsys)
    assert code == 0, stderr
    assert chart.stat().st_size > 1000 and stdout.count("gsm8k") == 2
    assert load_results(tmp_path / "run2")["settings"]["temperature"] == 0


def test_eval_math_cli_errors(tmp_path, capsys):
    """Data and argument mistakes: one `error:` line, exit code 2, before any model loads."""
    bad = write_json(tmp_path / "bad.json", [{"problem": "p", "answer": "1"}, {"problem": "no answer"}])
    write_json(tmp_path / "gsm8k.json", [{"problem": "p", "answer": "1"}])
    base = ["eval", "math", "--model", tmp_path / "no-such-model", "--data-dir", tmp_path]
    cases = [
        (["--benchmarks", bad], "record 2: missing field 'answer'"),
        (["--benchmarks", "gsm8k,math5OO"], "did you mean 'math500'"),
        (["--benchmarks", "gsm8k", "--samples", 0], "--samples must be at least 1"),
        (["--benchmarks", "gsm8k", "--out", bad], "exists and is not a folder"),
        (["--benchmarks", "gsm8k,gsm8k"], "named twice"),
    ]
    for extra, message in cases:
        code, _, stderr = run_cli([*base, *extra], capsys)
        assert code == 2, (extra, stderr)
        assert stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1, stderr
    code, _, stderr = run_cli(["eval", "math-plot", tmp_path], capsys)
    assert code == 2 and "no results.json" in stderr


def test_cli_exit_code_in_a_subprocess(tmp_path):
    import subprocess

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no marker"}])
    cmd = [sys.executable, "-m", "posttrain", "eval", "math", "--model", "x", "--benchmarks", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}: record 1: field 'answer': no '####' final-answer marker (GSM8K solutions end with '#### n')"
    ]


# ------------------------------------------------------------------------------------ quickstart data


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_arithmetic", DRPO_DATA / "make_arithmetic.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_arithmetic_data_is_reproducible(tmp_path):
    gen = _load_generator()
    gen.main(["--out-dir", str(tmp_path)])
    for name in (gen.TRAIN_FILE, gen.TEST_FILE):
        assert (tmp_path / name).read_bytes() == (DRPO_DATA / name).read_bytes(), f"{name}: regenerate it"


def _recompute(problem: str, kind: str) -> int:
    """The answer from the problem text alone (the numbers in order of appearance)."""
    n = [int(x) for x in re.findall(r"\d+", problem)]
    return {
        "add": lambda: n[0] + n[1],
        "subtract": lambda: n[0] - n[1],
        "together": lambda: n[0] + n[1],
        "more_than": lambda: n[0] + n[1],
        "multiply": lambda: n[0] * n[1],
    }[kind]()


def test_arithmetic_data_labels():
    train = load_math_split(DataSource(path=str(DRPO_DATA / "arithmetic_train.jsonl"), format="math"))
    test_rows = read_jsonl(DRPO_DATA / "arithmetic_test.jsonl")
    train_rows = read_jsonl(DRPO_DATA / "arithmetic_train.jsonl")
    assert len(train) == len(train_rows) == 400 and len(test_rows) == 100
    assert not {r["problem"] for r in train_rows} & {r["problem"] for r in test_rows}
    for row in train_rows + test_rows:
        assert row["answer"] == str(_recompute(row["problem"], row["type"])), row
        assert int(row["answer"]) > 0
        assert is_correct(f"\\boxed{{{row['answer']}}}", row["answer"])
    assert build_prompt(train_rows[0]["problem"]) == train[0]["prompt"]

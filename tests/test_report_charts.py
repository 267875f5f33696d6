"""Charts that describe themselves: the MT-Bench radar with and without usable judgments."""

from __future__ import annotations

import matplotlib.image as mpimg

from posttrain.evaluation.mt_bench import plot_radar


def _run(label: str, values: dict, valid: int) -> dict:
    overall = sum(v for v in values.values() if v is not None) / max(
        sum(v is not None for v in values.values()), 1
    )
    return {
        "mode": "single",
        "label": label,
        "judge_id": "judge",
        "categories": values,
        "overall": overall if valid else None,
        "counts": {"valid": valid, "expected": 4, "unparseable": 4 - valid, "missing": 0},
    }


def test_radar_without_usable_judgments_is_a_note_not_an_empty_chart(tmp_path):
    empty = _run("policy", {"writing": None, "math": None}, valid=0)
    path = plot_radar([empty], tmp_path / "empty.png")
    height, width = mpimg.imread(path).shape[:2]
    assert (width, height) == (620, 220)  # the one-line note figure, no polar axes


def test_radar_keeps_its_legend_and_leaves_out_runs_without_values(tmp_path):
    good = _run("policy", {"writing": 7.0, "math": 4.0, "coding": 5.0}, valid=4)
    empty = _run("other", {"writing": None, "math": None, "coding": None}, valid=0)
    path = plot_radar([good, empty], tmp_path / "radar.png")
    height, width = mpimg.imread(path).shape[:2]
    assert width > 620  # saved with a tight bounding box that takes in the legend outside the axes

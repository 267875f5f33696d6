"""The study runner (posttrain/experiments): resume, aggregation, t intervals on hand-made numbers, the
summary table and the plots — with an injected run function, no training. One integration test per study
runs it end to end at the micro scale (1 arm, 1 seed, 1 step)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.experiments import cpl_hh, drpo_length, shared_dir
from posttrain.experiments.__main__ import main
from posttrain.experiments.runner import (
    RESULT_FILE,
    Metric,
    RunFailed,
    Study,
    format_cell,
    interval,
    markdown_table,
    paired_differences,
    run_study,
    summarize,
    t_quantile_975,
)

HH = shared_dir() / cpl_hh.HH_DEFAULT


def fake_study(arms=("a", "b"), **kw) -> Study:
    return Study(
        name="fake",
        arms=list(arms),
        config={"x": 1},
        worker="nowhere",
        metrics=[Metric("acc", "accuracy (%)", 100.0, 1), Metric("len", "length", 1.0, 2)],
        **kw,
    )


class FakeRunner:
    """Stands in for the subprocess executor: records each call and returns metrics from a table."""

    def __init__(self, values=None, fail=()):
        self.calls: list[tuple[str, int]] = []
        self.values = values or {}
        self.fail = set(fail)

    def __call__(self, spec) -> dict:
        self.calls.append((spec.arm, spec.seed))
        assert Path(spec.run_dir, "spec.json").is_file()
        if (spec.arm, spec.seed) in self.fail:
            raise RunFailed("boom")
        acc, length = self.values.get((spec.arm, spec.seed), (0.5, 10.0))
        return {"metrics": {"acc": acc, "len": length}}


def quiet(_line: str) -> None:
    pass


# ------------------------------------------------------------------------------------------ intervals


def test_t_quantiles_match_the_tables():
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile_975(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile_975(1000) == pytest.approx(1.962, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_interval_on_hand_made_numbers():
    # [1, 2, 3]: mean 2, s = 1, half-width = t_{0.975,2} · 1 / √3 = 4.303 / 1.732 = 2.484
    st = interval([1.0, 2.0, 3.0])
    assert st["n"] == 3
    assert st["mean"] == pytest.approx(2.0)
    assert st["sd"] == pytest.approx(1.0)
    assert st["half_width"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert st["half_width"] == pytest.approx(2.484, abs=1e-3)
    assert (st["low"], st["high"]) == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-3)
    # [0.2, 0.4]: mean 0.3, s = 0.1414, half-width = 12.706 · 0.1414 / √2 = 1.2706
    two = interval([0.2, 0.4])
    assert two["half_width"] == pytest.approx(12.7062 * math.sqrt(0.02) / math.sqrt(2), rel=1e-4)
    # identical values: zero width
    assert interval([5.0, 5.0, 5.0])["half_width"] == pytest.approx(0.0)


def test_interval_with_one_value_or_none():
    one = interval([0.7])
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.7) and one["half_width"] is None
    assert interval([None, float("nan")])["mean"] is None  # missing values are left out
    assert interval([1.0, None, 3.0])["n"] == 2
    m = Metric("acc", "accuracy", 100.0, 1)
    assert format_cell(one, m) == "70.0 (n=1, no interval)"
    assert format_cell(interval([]), m) == "—"
    assert format_cell(interval([0.1, 0.2, 0.3]), m) == f"20.0 ± {100 * 4.302653 * 0.1 / math.sqrt(3):.1f}"


# ------------------------------------------------------------------------------------------ resume


def test_every_run_writes_its_result_and_a_rerun_redoes_nothing(tmp_path):
    st = fake_study()
    runner = FakeRunner()
    summary = run_study(st, tmp_path, [1, 2, 3], execute=runner, log=quiet)
    assert sorted(runner.calls) == [(a, s) for a in ("a", "b") for s in (1, 2, 3)]
    for arm in ("a", "b"):
        for seed in (1, 2, 3):
            result = json.loads((tmp_path / arm / f"seed{seed}" / RESULT_FILE).read_text())
            assert result["arm"] == arm and result["seed"] == seed and result["metrics"]["acc"] == 0.5
    assert summary["failed"] == []
    again = FakeRunner()
    run_study(st, tmp_path, [1, 2, 3], execute=again, log=quiet)
    assert again.calls == []  # finished runs are never redone


def test_a_partial_run_is_cleared_and_redone(tmp_path):
    st = fake_study()
    run_study(st, tmp_path, [1, 2], execute=FakeRunner(), log=quiet)
    partial = tmp_path / "b" / "seed2"
    (partial / RESULT_FILE).unlink()  # as if killed before the result was written
    (partial / "half_written_model.bin").write_text("x")
    finished_before = (tmp_path / "a" / "seed1" / RESULT_FILE).read_text()
    runner = FakeRunner()
    lines: list[str] = []
    run_study(st, tmp_path, [1, 2], execute=runner, log=lines.append)
    assert runner.calls == [("b", 2)]
    assert not (partial / "half_written_model.bin").exists()
    assert (partial / RESULT_FILE).is_file()
    assert (tmp_path / "a" / "seed1" / RESULT_FILE).read_text() == finished_before
    assert any("partial run" in line for line in lines)


def test_more_seeds_later_runs_only_the_new_ones(tmp_path):
    st = fake_study()
    run_study(st, tmp_path, [1], execute=FakeRunner(), log=quiet)
    runner = FakeRunner()
    summary = run_study(st, tmp_path, [1, 2], execute=runner, log=quiet)
    assert sorted(runner.calls) == [("a", 2), ("b", 2)]
    assert summary["arms"]["a"]["runs"] == 2


def test_a_failed_run_writes_no_result_and_is_redone_next_time(tmp_path):
    st = fake_study()
    summary = run_study(st, tmp_path, [1, 2], execute=FakeRunner(fail=[("a", 2)]), log=quiet)
    assert [(f["arm"], f["seed"]) for f in summary["failed"]] == [("a", 2)]
    assert not (tmp_path / "a" / "seed2" / RESULT_FILE).exists()
    assert summary["arms"]["a"]["runs"] == 1
    assert "Failed this time" in (tmp_path / "summary.md").read_text()
    runner = FakeRunner()
    run_study(st, tmp_path, [1, 2], execute=runner, log=quiet)
    assert runner.calls == [("a", 2)]


def test_a_study_folder_with_another_configuration_is_refused(tmp_path):
    run_study(fake_study(), tmp_path, [1], execute=FakeRunner(), log=quiet)
    other = fake_study()
    other.config = {"x": 2}
    with pytest.raises(UserError, match="another configuration"):
        run_study(other, tmp_path, [1, 2], execute=FakeRunner(), log=quiet)


def test_dry_run_runs_and_writes_nothing(tmp_path):
    runner = FakeRunner()
    lines: list[str] = []
    out = run_study(fake_study(), tmp_path / "s", [1, 2], execute=runner, dry_run=True, log=lines.append)
    assert runner.calls == [] and not (tmp_path / "s").exists()
    assert out["planned"] == 4 and any("a seed2: to run" in line for line in lines)


def test_a_deterministic_arm_runs_once(tmp_path):
    st = fake_study(arms=("base", "a"), deterministic_arms=["base"])
    runner = FakeRunner()
    summary = run_study(st, tmp_path, [1, 2, 3], execute=runner, log=quiet)
    assert sorted(runner.calls) == [("a", 1), ("a", 2), ("a", 3), ("base", 1)]
    assert summary["arms"]["base"]["runs"] == 1


# ------------------------------------------------------------------------------------------ summary


def test_aggregation_and_summary_table(tmp_path):
    values = {
        ("a", 1): (0.1, 10.0),
        ("a", 2): (0.2, 20.0),
        ("a", 3): (0.3, 30.0),
        ("b", 1): (0.5, 4.0),
    }
    st = fake_study()
    summary = run_study(st, tmp_path, [1, 2, 3], execute=FakeRunner(values=values), log=quiet)
    a = summary["arms"]["a"]["metrics"]
    assert a["acc"]["mean"] == pytest.approx(0.2)
    assert a["acc"]["half_width"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert a["len"]["mean"] == pytest.approx(20.0)
    assert a["len"]["half_width"] == pytest.approx(4.302653 * 10 / math.sqrt(3), rel=1e-5)
    b = summary["arms"]["b"]["metrics"]
    assert b["acc"]["n"] == 3  # b seeds 2, 3 get the default 0.5
    md = (tmp_path / "summary.md").read_text()
    assert "| arm | runs | accuracy (%) | length |" in md
    assert "| a | 3 | 20.0 ± 24.8 | 20.00 ± 24.84 |" in md
    # b: lengths 4, 10, 10 → mean 8, s = √12, half-width = 4.303 · √12 / √3 = 8.61
    assert "| b | 3 | 50.0 ± 0.0 | 8.00 ± 8.61 |" in md
    js = json.loads((tmp_path / "summary.json").read_text())
    assert js["arms"]["a"]["metrics"]["acc"]["mean"] == pytest.approx(0.2)
    assert len(js["runs"]) == 6


def test_summary_of_a_single_seed_says_no_interval():
    st = fake_study(arms=("a",))
    summary = summarize(st, [{"arm": "a", "seed": 1, "metrics": {"acc": 0.25, "len": 3.0}}], [1])
    assert "| a | 1 | 25.0 (n=1, no interval) | 3.00 (n=1, no interval) |" in markdown_table(st, summary)


def test_paired_differences_by_seed_on_hand_made_numbers(tmp_path):
    # a − b per seed: 0.1 − 0.5, 0.4 − 0.6, 0.4 − 0.5 → −0.4, −0.2, −0.1: mean −0.2333, s = 0.15275
    values = {
        ("a", 1): (0.1, 10.0),
        ("a", 2): (0.4, 20.0),
        ("a", 3): (0.4, 30.0),
        ("b", 1): (0.5, 10.0),
        ("b", 2): (0.6, 10.0),
        ("b", 3): (0.5, 10.0),
    }
    st = fake_study(compare_to=["b"], compare_metrics=["acc"])
    summary = run_study(st, tmp_path, [1, 2, 3], execute=FakeRunner(values=values), log=quiet)
    d = summary["paired"]["b"]["a"]["acc"]
    assert d["n"] == 3 and d["mean"] == pytest.approx(-0.7 / 3)
    assert d["half_width"] == pytest.approx(4.302653 * 0.152753 / math.sqrt(3), rel=1e-4)
    md = (tmp_path / "summary.md").read_text()
    assert "Paired differences, arm − b" in md
    # −23.3 ± 37.9: the interval includes 0, so the cell is not bold
    assert "| a | -23.3 ± 37.9 |" in md
    assert "Run time: 6 runs, " in md  # the runner times every run


def test_paired_differences_against_a_deterministic_arm_and_bold_when_0_is_excluded():
    st = fake_study(
        arms=("base", "a"), compare_to=["base"], compare_metrics=["acc"], deterministic_arms=["base"]
    )
    runs = [{"arm": "base", "seed": 1, "metrics": {"acc": 0.2}, "wall_s": 60.0}]
    runs += [
        {"arm": "a", "seed": k, "metrics": {"acc": 0.2 + v}, "wall_s": 120.0}
        for k, v in ((1, 0.1), (2, 0.12), (3, 0.14))
    ]
    summary = summarize(st, runs, [1, 2, 3])
    d = summary["paired"]["base"]["a"]["acc"]
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.12) and d["low"] > 0
    assert summary["run_time"] == {"runs": 4, "total_s": 420.0, "longest_s": 120.0}
    from posttrain.experiments.runner import paired_tables

    assert "| a | **+12.0 ± 5.0** |" in "\n".join(paired_tables(st, summary))
    # base against a (the deterministic arm on the left): its one run against each seed of a
    st2 = fake_study(
        arms=("base", "a"), compare_to=["a"], compare_metrics=["acc"], deterministic_arms=["base"]
    )
    assert paired_differences(st2, runs)["a"]["base"]["acc"]["mean"] == pytest.approx(-0.12)


def test_cpl_heldout_sampling_bootstrap_on_hand_made_pairs():
    # 4 pairs; base right on pairs 0, 1; cpl right on 0, 1, 2 in both seeds → +25 points
    def scores(right):
        return [
            {"chosen_sum": -1.0 if ok else -3.0, "chosen_n": 1, "rejected_sum": -2.0, "rejected_n": 1}
            for ok in right
        ]

    runs = [{"arm": "base", "seed": 1, "pair_scores": scores([1, 1, 0, 0])}]
    runs += [{"arm": "cpl", "seed": k, "pair_scores": scores([1, 1, 1, 0])} for k in (1, 2)]
    assert cpl_hh.pair_correct(runs[0]["pair_scores"]) == [1.0, 1.0, 0.0, 0.0]
    mean, low, high = cpl_hh.bootstrap_difference([1, 1, 1, 0], [1, 1, 0, 0])
    assert mean == pytest.approx(0.25) and 0 <= low <= 0.25 <= high <= 0.75
    lines = cpl_hh.heldout_sampling_analysis(runs)
    row = next(line for line in lines if line.startswith("| cpl |"))
    assert row.startswith("| cpl | +25.0 [") and row.endswith("| — |")


def _drpo_results():
    rows = []
    for arm, base in (("base", 0.2), ("drpo", 0.5), ("grpo", 0.45)):
        for seed in (1, 2, 3):
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "metrics": {
                        "pass@1": base + 0.02 * seed,
                        "mean_length_correct": 40 - 5 * seed,
                        "mean_length": 50,
                    },
                }
            )
    rows[-1]["metrics"]["mean_length_correct"] = None  # a run with no correct answer
    return rows


def test_drpo_plot_is_written(tmp_path):
    st = drpo_length.study("micro", arms=["base", "drpo", "grpo"])
    results = _drpo_results()
    summary = summarize(st, results, [1, 2, 3])
    path = drpo_length.plot(results, summary, tmp_path)
    assert path.is_file() and path.stat().st_size > 5000 and path.suffix == ".png"


def test_cpl_plot_is_written(tmp_path):
    st = cpl_hh.study("micro", arms=["base", "cpl", "dpo"])
    results = [{"arm": "base", "seed": 1, "metrics": {"common_accuracy": 0.5, "own_accuracy": 0.5}}]
    for arm in ("cpl", "dpo"):
        for seed in (1, 2):
            results.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "metrics": {"common_accuracy": 0.55 + 0.01 * seed, "own_accuracy": 0.6},
                }
            )
    summary = summarize(st, results, [1, 2])
    path = cpl_hh.plot(results, summary, tmp_path)
    assert path.is_file() and path.stat().st_size > 5000


def test_the_runner_writes_the_study_plot(tmp_path):
    st = drpo_length.study("micro", arms=["drpo", "grpo"])
    values = iter(_drpo_results()[3:])

    def execute(spec):
        return {"metrics": next(values)["metrics"]}

    summary = run_study(st, tmp_path, [1, 2, 3], execute=execute, log=quiet)
    assert Path(summary["plot"]).is_file() and Path(summary["plot"]).name == "drpo_length.png"


# ------------------------------------------------------------------------------------------ the studies


def test_drpo_recipes_differ_only_in_the_objective(tmp_path):
    import yaml

    from posttrain.recipe import load_recipe

    st = drpo_length.study("cpu")
    recipes = {arm: drpo_length.recipe_for(arm, 2, st.config, tmp_path / arm) for arm in drpo_length.ARMS[1:]}
    for arm, recipe in recipes.items():
        assert recipe["drpo"]["objective"] == arm
        assert recipe["drpo"]["rewards"] == ["math_correctness"]
        assert recipe["drpo"]["prompt_suffix"] == drpo_length.TASK["prompt_suffix"]
        assert recipe["training"]["seed"] == 2
        path = tmp_path / f"{arm}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        loaded = load_recipe(str(path), check_files=False)  # the recipe schema accepts it
        assert loaded.method == "drpo"
    strip = [
        {**r, "drpo": {k: v for k, v in r["drpo"].items() if k != "objective"}} for r in recipes.values()
    ]
    for r in strip:
        r.pop("output_dir"), r.pop("description")
    assert all(r == strip[0] for r in strip)


def test_drpo_task_is_one_place_and_overridable():
    st = drpo_length.study("cpu", task={"prompt_suffix": "Answer in \\boxed{}."})
    assert st.config["task"]["prompt_suffix"] == "Answer in \\boxed{}."
    recipe = drpo_length.recipe_for("drpo", 1, st.config, Path("/tmp/x"))
    assert recipe["drpo"]["prompt_suffix"] == "Answer in \\boxed{}."
    assert Path(st.config["task"]["train"]).is_absolute()


def test_cpl_recipes_validate_and_share_the_trainer_settings(tmp_path):
    import yaml

    from posttrain.recipe import load_recipe

    st = cpl_hh.study("cpu")
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n")
    for arm in ("cpl", "cpl_ln"):
        recipe = cpl_hh.cpl_recipe(arm, 1, st.config, data, tmp_path / arm)
        path = tmp_path / f"{arm}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        loaded = load_recipe(str(path), check_files=False)
        assert loaded.method == "cpl"
        assert recipe["training"]["train_sampling_strategy"] == "sequential"
        assert recipe["training"]["max_steps"] == st.config["max_steps"]
    assert cpl_hh.METHODS["cpl"]["alpha"] == 0.1 and cpl_hh.METHODS["cpl"]["bias"] == 0.5
    assert cpl_hh.METHODS["cpl_ln"]["length_normalize"] is True
    assert cpl_hh.METHODS["simpo"]["loss_type"] == "simpo" and cpl_hh.METHODS["simpo"]["cpo_alpha"] == 0.0
    assert cpl_hh.METHODS["cpo"]["loss_type"] == "sigmoid"


def test_cpl_split_is_by_prompt_hash_and_deterministic():
    records = [
        {"prompt": [{"role": "user", "content": f"q{i % 40}"}], "responses": ["a", "b"]} for i in range(200)
    ]
    train, held = cpl_hh.split_records(records, 20)
    train2, held2 = cpl_hh.split_records(list(reversed(records)), 20)
    assert {json.dumps(r["prompt"]) for r in held} == {json.dumps(r["prompt"]) for r in held2}
    assert not {json.dumps(r["prompt"]) for r in held} & {json.dumps(r["prompt"]) for r in train}
    assert 0 < len(held) < len(records)
    assert [cpl_hh.prompt_hash(r["prompt"]) for r in held] == sorted(
        cpl_hh.prompt_hash(r["prompt"]) for r in held
    )
    pool = list(range(50))
    assert cpl_hh.train_pairs(pool, 1, 10) == cpl_hh.train_pairs(pool, 1, 10)
    assert cpl_hh.train_pairs(pool, 1, 10) != cpl_hh.train_pairs(pool, 2, 10)


def test_cpl_accuracies_on_hand_made_scores():
    # pair 1: chosen sum -10 over 10 tokens (mean -1), rejected -6 over 3 (mean -2): common says chosen,
    #         summed log-probs say rejected
    # pair 2: chosen -4/4 (mean -1), rejected -3/6 (mean -0.5): common says rejected, sums say rejected
    policy = [
        {"chosen_sum": -10.0, "chosen_n": 10, "rejected_sum": -6.0, "rejected_n": 3},
        {"chosen_sum": -4.0, "chosen_n": 4, "rejected_sum": -3.0, "rejected_n": 6},
    ]
    reference = [
        {
            "chosen_sum": -12.0,
            "chosen_n": 10,
            "rejected_sum": -5.0,
            "rejected_n": 3,
        },  # DPO: +2 − (−1) = 3 > 0
        {"chosen_sum": -4.0, "chosen_n": 4, "rejected_sum": -2.0, "rejected_n": 6},  # DPO: 0 − (−1) = 1 > 0
    ]
    common = cpl_hh.accuracies("cpl_ln", policy, None)
    assert common["common_accuracy"] == 0.5 and common["own_accuracy"] == 0.5
    assert common["common_margin"] == pytest.approx((1.0 - 0.5) / 2)
    assert cpl_hh.accuracies("cpl", policy, None)["own_accuracy"] == 0.0
    assert cpl_hh.accuracies("cpo", policy, None)["own_accuracy"] == 0.0
    assert cpl_hh.accuracies("dpo", policy, reference)["own_accuracy"] == 1.0
    assert cpl_hh.accuracies("simpo", policy, None)["own_accuracy"] == 0.5


def test_cpl_study_without_the_hh_file_is_one_error_line(tmp_path, capsys):
    code = main(
        [
            "cpl-hh",
            "--scale",
            "micro",
            "--hh",
            str(tmp_path / "missing.jsonl.gz"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: cpl-hh: HH-RLHF file not found") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_unknown_arm_is_one_error_line(tmp_path, capsys):
    code = main(["drpo-length", "--arms", "drpo,ppo", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "error: --arms: unknown arm(s) ppo" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.integration
def test_drpo_study_micro_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "drpo"
    assert main(["drpo-length", "--scale", "micro", "--seeds", "1", "--arms", "drpo", "--out", str(out)]) == 0
    result = json.loads((out / "drpo" / "seed1" / RESULT_FILE).read_text())
    assert result["train"]["steps"] == 1
    assert 0.0 <= result["metrics"]["pass@1"] <= 1.0 and result["metrics"]["mean_length"] > 0
    assert (out / "summary.md").is_file() and (out / "drpo_length.png").is_file()
    assert not list((out / "drpo" / "seed1" / "model").glob("*.safetensors"))  # weights removed after eval


@pytest.mark.integration
@pytest.mark.skipif(
    not HH.is_file(), reason=f"HH-RLHF harmless-base not found at {HH} (../shared beside the project)"
)
def test_cpl_study_micro_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "cpl"
    assert main(["cpl-hh", "--scale", "micro", "--seeds", "1", "--arms", "cpl,simpo", "--out", str(out)]) == 0
    for arm in ("cpl", "simpo"):
        result = json.loads((out / arm / "seed1" / RESULT_FILE).read_text())
        m = result["metrics"]
        assert result["train"]["steps"] == 1
        assert 0.0 <= m["common_accuracy"] <= 1.0 and 0.0 <= m["own_accuracy"] <= 1.0
        assert m["heldout_pairs"] == cpl_hh.SCALES["micro"]["heldout_pairs"]
        assert m["gen_length"] > 0 and m["step_time_s"] > 0 and m["peak_rss_mib"] > 0
    assert (out / "cpl_hh_accuracy.png").is_file()


def test_summary_records_the_command_versions_and_machine(tmp_path):
    run_study(fake_study(), tmp_path, [1], execute=FakeRunner(), log=quiet, command="python -m x fake")
    js = json.loads((tmp_path / "summary.json").read_text())
    assert js["command"] == "python -m x fake"
    assert "torch" in js["environment"]["versions"] and js["environment"]["machine"]["cpus"] >= 1
    assert "Command: `python -m x fake`" in (tmp_path / "summary.md").read_text()


def test_set_changes_the_study_configuration(tmp_path, capsys):
    from posttrain.experiments.__main__ import apply_setting

    st = drpo_length.study("cpu")
    apply_setting(st.config, "training.max_steps=16")
    apply_setting(st.config, "drpo.use_vllm=true")
    apply_setting(st.config, "task.prompt_suffix=Box it: \\boxed{}.")
    assert st.config["training"]["max_steps"] == 16 and st.config["drpo"]["use_vllm"] is True
    recipe = drpo_length.recipe_for("drpo", 1, st.config, tmp_path)
    assert recipe["training"]["max_steps"] == 16 and recipe["drpo"]["use_vllm"] is True
    assert recipe["drpo"]["prompt_suffix"] == "Box it: \\boxed{}."
    with pytest.raises(UserError, match="unknown key"):
        apply_setting(st.config, "eval.limt=3")
    with pytest.raises(UserError, match="no section"):
        apply_setting(st.config, "evl.limit=3")
    code = main(["cpl-hh", "--set", "max_step=3", "--out", str(tmp_path / "o")])
    assert code == 2 and "error: --set max_step: unknown key" in capsys.readouterr().err

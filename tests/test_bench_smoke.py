"""Benchmark harnesses run end to end on the tiny random model (--quick): they measure, they do not assert speed."""

from __future__ import annotations

import importlib.util
import json

from conftest import ROOT


def _load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_drpo_step_time_harness_runs(tiny_model_dir, tmp_path):
    bench = _load_bench("drpo_step_time")
    out = tmp_path / "drpo_step_time.json"
    bench.main(["--quick", "--threads", "1", "--model", str(tiny_model_dir), "--out", str(out)])

    result = json.loads(out.read_text())
    assert (tmp_path / "drpo_step_time.md").read_text().startswith("# DRPO vs GRPO step time")
    for key in ("machine", "settings", "loss_backward", "full_step", "within_5_percent", "notes"):
        assert key in result
    assert result["quick"] and result["settings"]["repeats"] == 1
    for part in ("loss_backward", "full_step"):
        block = result[part]
        assert block["ratio_median"] > 0 and block["ratio_min"] <= block["ratio_max"]
        assert len(block["ratios"]) == 1
        for name in ("drpo", "grpo"):
            assert block[name]["time_s"]["median"] > 0 and len(block[name]["time_s"]["raw"]) == 1
            assert block[name]["completion_tokens_per_s"] > 0
            assert block[name]["peak_memory"]["peak_mib"] > 0
    # learning rate 0 and per-step reseeding: both objectives sample the same completions
    assert result["full_step"]["rollouts_identical"]
    assert result["loss_backward"]["completion_tokens"] > 0

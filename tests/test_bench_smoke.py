"""Benchmark harnesses run end to end on the tiny random model (--quick): they measure, they do not assert
speed. Also: the speed-ups made for the benchmarks keep results identical."""

from __future__ import annotations

import importlib
import json

import pytest
import torch


def _load_bench(name: str):
    return importlib.import_module(f"bench.{name}")


def _quick(name: str, tiny_model_dir, tmp_path, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    _load_bench(name).main(
        ["--quick", "--threads", "1", "--model", str(tiny_model_dir), "--out", str(out), *extra]
    )
    assert out.with_suffix(".md").read_text().startswith("# ")
    result = json.loads(out.read_text())
    assert result["quick"] and result["targets"]
    for target in result["targets"]:
        ratio = target["ratio"]
        assert 0 < ratio["min"] <= ratio["median"] * (1 + 1e-9) and ratio["median"] <= ratio["max"] * (
            1 + 1e-9
        )
    return result


@pytest.mark.integration
def test_drpo_step_time_harness_runs(tiny_model_dir, tmp_path):
    result = _quick("drpo_step_time", tiny_model_dir, tmp_path)
    assert (tmp_path / "drpo_step_time.md").read_text().startswith("# DRPO vs GRPO step time")
    for key in ("machine", "settings", "loss_backward", "full_step", "within_5_percent", "notes"):
        assert key in result
    assert result["settings"]["repeats"] == 1
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


@pytest.mark.integration
def test_cpl_vs_trl_harness_runs(tiny_model_dir, tmp_path):
    result = _quick("cpl_vs_trl", tiny_model_dir, tmp_path)
    assert set(result["arms"]) == {"cpl", "dpo", "cpo"}
    for arm in result["arms"].values():
        assert (
            len(arm["time_s"]["raw"]) == 1 and arm["tokens_per_s"] > 0 and arm["peak_memory"]["peak_mib"] > 0
        )
    # every trainer trains on the same token sequences (CPO's extra EOS aside)
    assert result["pairs"]["cpl_vs_dpo"]["same_sequences"] and result["pairs"]["cpl_vs_cpo"]["same_sequences"]
    assert result["arms"]["dpo"]["state"]["reference_params_mib"] > 0


@pytest.mark.integration
def test_rm_vs_trl_harness_runs(tiny_model_dir, tmp_path):
    result = _quick("rm_vs_trl", tiny_model_dir, tmp_path)
    rm, bt = result["arms"]["principle_rm"], result["arms"]["reward_trainer"]
    assert rm["sequences_per_step"] == bt["sequences_per_step"] == 4
    assert rm["tokens_per_s"] > 0 and bt["tokens_per_s"] > 0


@pytest.mark.integration
def test_packing_harness_runs_and_losses_match(tiny_model_dir, tmp_path):
    result = _quick("packing", tiny_model_dir, tmp_path)
    for kind in ("cpl", "rm"):
        same = result["kinds"][kind]["same_loss"]
        assert same["loss_abs_diff"] < 1e-5, same
    assert result["kinds"]["cpl"]["same_loss"]["max_token_logp_abs_diff"] < 1e-4
    assert all(t["met"] for t in result["targets"])


@pytest.mark.integration
def test_principle_scoring_harness_runs(tiny_model_dir, tmp_path):
    result = _quick("principle_scoring", tiny_model_dir, tmp_path)
    assert result["k"] == 2 and result["max_abs_reward_diff"] < 1e-3


def test_summary_table_reads_every_layout(tmp_path):
    summary = _load_bench("summary")
    legacy_drpo = {"full_step": {"ratio_median": 1.0, "ratio_min": 0.9, "ratio_max": 1.1}}
    legacy_scoring = {"k": 8, "speedup_median": 3.5, "speedup_min": 3.2, "speedup_max": 3.9}
    new = {"targets": [{"pair": "A vs B", "target": "≤ 0.6×", "metric": "step time ratio", "met": False,
                        "ratio": {"median": 0.7, "min": 0.6, "max": 0.8},
                        "before": {"median": 0.9, "min": 0.8, "max": 1.0}}]}  # fmt: skip
    for name, body in [("drpo_step_time", legacy_drpo), ("principle_scoring", legacy_scoring),
                       ("cpl_vs_trl", new)]:  # fmt: skip
        (tmp_path / f"{name}.json").write_text(json.dumps(body))
    text = summary.main(["--results", str(tmp_path)])
    assert (tmp_path / "README.md").read_text() == text
    assert (
        "| A vs B | ≤ 0.6× (step time ratio) | 0.900 (0.800–1.000) | 0.700 (0.600–0.800) | **NO** |" in text
    )
    assert "DRPO vs TRL GRPOTrainer" in text and "3.500 (3.200–3.900)" in text
    assert "| rm_vs_trl | — | — | not run |" in text


@pytest.mark.integration
def test_profile_step_runs(tiny_model_dir, tmp_path):
    bench = _load_bench("profile_step")
    argv = ["cpl", "principle_rm", "--quick", "--threads", "1", "--model", str(tiny_model_dir)]
    out = bench.main([*argv, "--out-dir", str(tmp_path)])
    for arm in ("cpl", "principle_rm"):
        text = (tmp_path / f"profile_{arm}.txt").read_text()
        assert text == out[arm] + "\n" and "forward + loss" in text and "Self CPU" in text


# ------------------------------------------------------------------ speed-ups keep results identical


def test_cpl_logits_mask_path_matches_full_logits(tiny_model_dir, tiny_tokenizer, tmp_path):
    """CPL projects only response positions onto the vocabulary (posttrain.lm_head.project_positions): same log-probs and
    gradients as projecting every position and gathering afterwards."""
    from test_cpl_trainer import _config, _trainer

    from posttrain.trainers.utils import gather_token_logps

    trainer = _trainer(tiny_model_dir, tiny_tokenizer, _config(tmp_path))
    model = trainer.model
    batch = next(iter(trainer.get_train_dataloader()))
    fast, mask = trainer._token_logps(model, batch)
    fast.sum().backward()
    fast_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    full = gather_token_logps(logits[:, :-1], batch["input_ids"][:, 1:], mask)
    full.sum().backward()
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=1e-6)
    for name, param in model.named_parameters():
        torch.testing.assert_close(fast_grads[name], param.grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grads_finite_matches_isfinite(bad, dtype):
    """The guard's min/max check says non-finite exactly when some gradient element is."""
    from posttrain.trainers.guards import grads_finite

    params = [torch.nn.Parameter(torch.zeros(n, dtype=dtype)) for n in (7, 1000, 0)]
    for p in params:
        p.grad = torch.randn(p.shape).to(dtype)
    if bad is not None:
        params[1].grad[123] = bad
    optimizer = torch.optim.SGD(params, lr=0.1)
    expected = all(bool(torch.isfinite(p.grad).all()) for p in params)
    assert grads_finite(optimizer) is expected


@pytest.mark.integration
def test_cpl_records_carry_a_length_for_group_by_length(tiny_model_dir, tiny_tokenizer, tmp_path):
    """CPL datasets have a ``length`` column (prompt + longest response), so the Trainer's
    group_by_length sampler can batch records of similar length; training runs with it."""
    from test_cpl_trainer import _config, _trainer

    args = _config(tmp_path, max_steps=1, train_sampling_strategy="group_by_length")
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, args)
    record = trainer.train_dataset[0]
    assert record["length"] == len(record["prompt_ids"]) + max(map(len, record["response_ids"]))
    trainer.train()
    assert trainer.state.global_step == 1

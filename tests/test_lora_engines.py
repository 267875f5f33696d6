"""LoRA (PEFT) under DeepSpeed ZeRO-3 and FSDP2 for every trainer: CPL, the principle RM (yes_no,
scalar_head, bradley_terry) and DRPO.

Each case trains a LoRA adapter on the tiny Llama for a few steps and checks that

- the run was distributed on the engine asked for;
- output_dir holds the adapter only (adapter_model.safetensors + adapter_config.json, no full weights),
  and the adapter trained: every lora_B (zero at init) is nonzero, so the engine gathered real values;
- with ``model.lora.save_merged: true``, output_dir/merged is a plain transformers model (loads without
  PEFT) whose outputs equal base + adapter (``peft.PeftModel``) on a fixed input within 1e-4, whose
  weights outside the adapted Linear layers equal the base's bit for bit (only the adapter trained), and,
  for the principle RMs, that ``PrincipleRewardModel`` (what ``posttrain score`` loads) reads it in the
  trained form.

ZeRO-3 runs as 2 CPU processes (launch/cpu_2proc_zero3.yaml). FSDP2 needs GPUs (accelerate enables FSDP
only on GPU-class devices; posttrain refuses it on CPU), so its cases run launch/fsdp2.yaml with one
process per GPU (at most 2) in fp32 where there is a GPU, and skip elsewhere. Every launch costs ~20-30 s
on two CPU cores, so a representative subset runs by default; the whole engine × trainer matrix runs with
POSTTRAIN_FULL_MATRIX=1 (make test-dist).
"""

from __future__ import annotations

import json
import os

import pytest
from helpers import ROOT
from test_distributed import ACCELERATE, _drpo_recipe, _recipe, _run

pytestmark = [pytest.mark.distributed, pytest.mark.integration]

FULL_MATRIX = os.environ.get("POSTTRAIN_FULL_MATRIX") == "1"
_full = pytest.mark.skipif(not FULL_MATRIX, reason="full engine matrix: run make test-dist")


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# FSDP2 runs only on GPUs: accelerate enables FSDP only on GPU-class devices (on CPU it would silently run
# DDP) and posttrain refuses it there. One process per GPU, at most two; fp32 so outputs compare to 1e-4.
_needs_gpu = pytest.mark.skipif(
    _gpus() == 0, reason="FSDP2 needs a GPU (on CPU accelerate falls back to DDP; posttrain refuses it)"
)
# the cpu_2proc configs put two processes on one GPU when there is exactly one (NCCL refuses that)
_two_procs = pytest.mark.skipif(_gpus() == 1, reason="2 processes need 2 GPUs or none")


def _engine(engine: str) -> tuple[list[str], str, int]:
    """accelerate launch arguments, accelerate's distributed_type and the number of processes."""
    if engine == "fsdp2":
        procs = min(2, _gpus())
        args = ["--config_file", str(ROOT / "launch" / "fsdp2.yaml"), "--num_processes", str(procs)]
        return [*args, "--mixed_precision", "no"], "FSDP", procs
    return ["--config_file", str(ROOT / "launch" / "cpu_2proc_zero3.yaml")], "DEEPSPEED", 2


# trainer → (recipe method, overrides that select it, model class the trainer trains)
TRAINERS = {
    "cpl": ("cpl", [], "causal_lm"),
    "yes_no": ("rlbff", ["rlbff.form=yes_no"], "causal_lm"),
    "scalar_head": ("rlbff", ["rlbff.form=scalar_head"], "sequence_classification"),
    "bradley_terry": (
        "rlbff",
        [
            "rlbff.form=bradley_terry",
            f"data.train.path={ROOT / 'data' / 'rlbff' / 'principles_pairs_train.jsonl'}",
            "data.train.format=pairs",
        ],
        "sequence_classification",
    ),
    "drpo": ("drpo", [], "causal_lm"),
}


def _case(trainer, engine, save_merged, *, default):
    marks = [_needs_gpu if engine == "fsdp2" else _two_procs]
    if not default:
        marks.append(_full)
    name = f"{trainer}-{engine}" + ("-merged" if save_merged else "")
    return pytest.param(trainer, engine, save_merged, id=name, marks=marks)


# (trainer, engine, save_merged). The default subset covers a causal-LM merge and an RM merge (the head
# trained in full beside the adapter) and the RL trainer's generation under ZeRO-3, and three trainers under
# FSDP2 where there is a GPU; the whole matrix runs with POSTTRAIN_FULL_MATRIX=1.
CASES = [
    _case("cpl", "zero3", True, default=True),
    _case("scalar_head", "zero3", True, default=True),
    _case("drpo", "zero3", False, default=True),
    _case("yes_no", "zero3", True, default=False),
    _case("bradley_terry", "zero3", True, default=False),
    _case("cpl", "fsdp2", True, default=True),
    _case("yes_no", "fsdp2", True, default=True),
    _case("drpo", "fsdp2", True, default=True),
    _case("scalar_head", "fsdp2", True, default=False),
    _case("bradley_terry", "fsdp2", True, default=False),
]

LORA = "model.lora={r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear, save_merged: %s}"


def _load(kind: str, path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if kind == "sequence_classification":
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    return AutoModelForCausalLM.from_pretrained(path).eval()


def _check_adapter(out, kind: str) -> None:
    from safetensors.torch import load_file

    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists(), "full weights written beside the adapter"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == ("SEQ_CLS" if kind == "sequence_classification" else "CAUSAL_LM")
    weights = load_file(out / "adapter_model.safetensors")
    # adapter-only: LoRA matrices, plus the freshly initialised head an RM trains in full (modules_to_save)
    assert all("lora_" in k or ".score." in k for k in weights), sorted(weights)
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b, sorted(weights)
    # lora_B starts at zero: every one trained (ZeRO-3 / FSDP2 gathered the real values, not empty shards)
    zero = [k for k, v in lora_b.items() if not v.abs().sum() > 0]
    assert not zero, f"untrained (still zero) lora_B: {zero}"
    if kind == "sequence_classification":
        assert any(".score." in k for k in weights), "the RM head was not saved with the adapter"


def _check_merged(out, kind: str, base_dir, trainer: str) -> None:
    import torch
    from peft import PeftModel

    merged_dir = out / "merged"
    assert (merged_dir / "config.json").is_file()
    assert not (merged_dir / "adapter_config.json").exists()
    merged = _load(kind, merged_dir)  # plain transformers: no PEFT involved
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    reference = PeftModel.from_pretrained(_load(kind, base_dir), out).eval()

    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 11, 64, 128]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        got = merged(input_ids=ids, attention_mask=mask).logits
        want = reference(input_ids=ids, attention_mask=mask).logits
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)

    # only the adapter trained: what LoRA did not adapt (embeddings, norms, lm_head) is the base's, bit for
    # bit; the adapted Linear layers moved. The RM head is new (random in the base), trained in full.
    base = _load(kind, base_dir).state_dict()
    adapted = {n for n, m in merged.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}
    moved = 0
    for name, tensor in merged.state_dict().items():
        module = name.rsplit(".", 1)[0]
        if module in adapted:
            moved += not torch.equal(tensor, base[name])
        elif not name.startswith("score."):
            assert torch.equal(tensor, base[name]), f"{name} changed outside the adapter"
    assert moved == len(adapted), f"{len(adapted) - moved} adapted layers did not move"

    if trainer in ("yes_no", "scalar_head", "bradley_terry"):
        from posttrain.rewards.principle import PrincipleRewardModel

        rm = PrincipleRewardModel.from_pretrained(str(merged_dir))  # what `posttrain score` loads
        assert rm.form == trainer
        rewards = rm.score("What is 2 + 2?", "4.", ["The final answer is correct."])
        assert len(rewards) == 1 and torch.isfinite(torch.tensor(rewards)).all()


@pytest.mark.parametrize("trainer, engine, save_merged", CASES)
def test_lora_trains_and_saves(trainer, engine, save_merged, tmp_path, tiny_model_dir, monkeypatch):
    method, overrides, kind = TRAINERS[trainer]
    launch_args, distributed_type, procs = _engine(engine)
    if method == "drpo":  # the reward drpo_test_rewards:parity lives in tests/
        path = [str(ROOT / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
        recipe = _drpo_recipe(tmp_path, tiny_model_dir)
    else:
        recipe = _recipe(tmp_path, tiny_model_dir, method)
    out = tmp_path / "out"
    cmd = [ACCELERATE, "launch", *launch_args, "--main_process_port", "0"]
    cmd += ["-m", "posttrain", "train", str(recipe), f"output_dir={out}", *overrides]
    proc = _run([*cmd, LORA % str(save_merged).lower()])

    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == procs
    assert summary["distributed_type"] == distributed_type
    losses = [row["loss"] for row in json.loads((out / "log_history.json").read_text()) if "loss" in row]
    assert losses and all(isinstance(x, float) and x == x for x in losses)
    _check_adapter(out, kind)
    if save_merged:
        assert summary["merged"] == str(out / "merged")
        assert (
            f"merged model (base + adapter, loadable without PEFT) saved to {out / 'merged'}" in proc.stdout
        )
        _check_merged(out, kind, tiny_model_dir, trainer)
    else:
        assert "merged" not in summary
        assert not (out / "merged").exists()

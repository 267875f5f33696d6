"""DRPOTrainer on a tiny random model: group-intact micro-batches, the true loss, baselines, config errors."""

from __future__ import annotations

import math

import pytest
import torch
from drpo_test_rewards import parity
from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

from posttrain.errors import ConfigFieldError
from posttrain.losses import drpo_objective, length_penalized_rewards
from posttrain.trainers.drpo_config import DRPOConfig
from posttrain.trainers.drpo_trainer import DRPOTrainer, groups_intact, shuffle_groups, truncation_flags

K = 4


def _batch(n_groups=4, k=K):
    prompt_ids = torch.arange(n_groups).repeat_interleave(k).unsqueeze(1).repeat(1, 3)
    return {
        "prompt_ids": prompt_ids,
        "completion_ids": torch.arange(n_groups * k).unsqueeze(1),
        "texts": [f"row{i}" for i in range(n_groups * k)],
        "num_items_in_batch": torch.tensor(7),
        "old_per_token_logps": None,
    }


def test_shuffle_groups_keeps_every_micro_batch_whole():
    batch = _batch()
    gen = torch.Generator().manual_seed(0)
    shuffled = shuffle_groups(batch, K, generator=gen)
    assert sorted(shuffled["completion_ids"].flatten().tolist()) == list(range(16))
    assert shuffled["num_items_in_batch"].item() == 7 and shuffled["old_per_token_logps"] is None
    # rows, lists and tensors move together
    assert [f"row{i}" for i in shuffled["completion_ids"].flatten().tolist()] == shuffled["texts"]
    for micro in split_tensor_dict(shuffled, 4):
        assert groups_intact(micro["prompt_ids"], K)


def test_trl_row_shuffle_breaks_groups_and_the_guard_sees_it():
    torch.manual_seed(0)
    micro = split_tensor_dict(shuffle_sequence_dict(_batch()), 4)
    assert not all(groups_intact(m["prompt_ids"], K) for m in micro)


@pytest.fixture(scope="module")
def eos_tiny(tiny_model_dir, tmp_path_factory):
    """The tiny model with a boosted end-of-sequence logit, so sampled lengths vary (a random model rarely stops)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        ids = tok(
            "What is 3 plus 4? The answer is seven, since three and four make seven.", return_tensors="pt"
        )
        h = model(**ids, output_hidden_states=True).hidden_states[-1][0].mean(0)
        h = model.model.norm(h)
        model.lm_head.weight[tok.eos_token_id] = 8.0 * h / h.pow(2).sum()
    out = tmp_path_factory.mktemp("eos-tiny")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _dataset(n=16):
    from datasets import Dataset

    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}], "answer": str(2 * i)}
        for i in range(n)
    ]
    return Dataset.from_list(rows)


def _trainer(model_dir, tmp_path, **overrides):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=K,
        max_completion_length=12,
        learning_rate=1e-3,
        max_steps=4,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        steps_per_generation=2,
    )
    kwargs.update(overrides)
    args = DRPOConfig(**kwargs)
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return DRPOTrainer(
        model=model, reward_funcs=[parity], args=args, train_dataset=_dataset(), processing_class=tok
    )


@pytest.mark.integration
def test_drpo_trains_and_logs_the_true_loss(eos_tiny, tmp_path):
    trainer = _trainer(eos_tiny, tmp_path)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logs) == 4
    for row in logs:
        # the logged loss is −J + penalty itself (no S/S.detach() rescaling)
        assert row["loss"] == pytest.approx(-row["objective"] + row["kl_penalty"], abs=1e-4)
    # the first micro-batch of each generation is on-policy: no KL yet; the second one has moved
    assert logs[0]["kl"] == pytest.approx(0.0, abs=1e-6) and logs[2]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert logs[1]["kl"] > 0
    generated = [row for row in logs if "accuracy" in row]
    for key in ("accuracy", "groups/valid_fraction", "length/correct_mean", "length/incorrect_mean"):
        assert key in generated[0]
    assert any(row["groups/valid_fraction"] > 0 for row in generated)
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)


@pytest.mark.integration
def test_reward_functions_see_which_completions_were_cut(eos_tiny, tmp_path):
    """math_correctness grades a completion cut at max_completion_length wrong: the trainer passes each
    reward function a ``truncated`` flag (last token not EOS), which it must get right."""
    seen = {}

    def spy(prompts, completions, completion_ids, truncated, **kwargs):
        seen["ids"], seen["truncated"] = completion_ids, truncated
        return parity(prompts, completions)

    trainer = _trainer(eos_tiny, tmp_path, max_steps=1)
    trainer.reward_funcs, trainer.reward_func_names = [spy], ["spy"]
    trainer.model.train()
    trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    eos = trainer.processing_class.eos_token_id
    expected = [len(ids) == 12 and ids[-1] != eos for ids in seen["ids"]]
    assert seen["truncated"] == expected
    assert 0 < sum(expected) < len(expected)  # both kinds in the batch


@pytest.mark.integration
def test_grpo_lp_advantages_come_from_length_penalised_rewards(eos_tiny, tmp_path):
    trainer = _trainer(eos_tiny, tmp_path, objective="grpo_lp", length_penalty_alpha=0.5, max_steps=1)
    trainer.model.train()
    loader = trainer.get_train_dataloader()
    out = trainer._generate_and_score_completions(next(iter(loader)))
    correct, lengths = out["correct"].view(-1, K), out["lengths"].view(-1, K)
    shaped = length_penalized_rewards(correct, lengths, alpha=0.5)
    expected = (shaped - shaped.mean(1, keepdim=True)) / (shaped.std(1, keepdim=True) + 1e-4)
    assert torch.allclose(out["advantages"], expected.flatten(), atol=1e-5)


@pytest.mark.integration
def test_micro_batch_loss_equals_the_objective_on_its_groups(eos_tiny, tmp_path):
    trainer = _trainer(eos_tiny, tmp_path, max_steps=1)
    trainer.model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert groups_intact(inputs["prompt_ids"], K)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    loss = trainer.compute_loss(trainer.model, inputs)
    # recompute s(o) directly from the model (logits at temperature 0.6)
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    with torch.no_grad():
        logits = trainer.model(input_ids=ids, attention_mask=attn).logits[:, :-1] / 0.6
    c = inputs["completion_ids"].size(1)
    logps = (
        torch.log_softmax(logits[:, -c:], -1).gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)
    )
    mask = inputs["completion_mask"].float()
    scores = (logps * mask).sum(1) / mask.sum(1)
    j = drpo_objective(
        scores.view(-1, K),
        inputs["correct"].view(-1, K),
        inputs["lengths"].view(-1, K),
        max_length=12,
        lam=0.1,
        tau=10.0,
    )
    # gradient accumulation of 1 and an on-policy micro-batch: loss = −mean J
    assert loss.item() == pytest.approx(-j.mean().item(), abs=1e-4)
    assert not math.isnan(loss.item())


def test_config_requires_whole_groups_per_micro_batch(tmp_path):
    with pytest.raises(ConfigFieldError, match="per_device_train_batch_size"):
        DRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, num_generations=4, use_cpu=True)
    # the GRPO baseline has no such constraint (TRL's own checks apply)
    DRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=6,
        num_generations=3,
        objective="grpo",
        use_cpu=True,
    )


def test_checkpoints_fall_on_rollout_boundaries(tmp_path):
    """A rollout generated every 4 micro-steps with 2 micro-steps per update spans 2 optimizer steps: a
    checkpoint (which holds no buffered rollout) can only be taken every 2 steps."""
    kw = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, use_cpu=True)
    kw |= dict(gradient_accumulation_steps=2, steps_per_generation=4, save_strategy="steps")
    assert DRPOConfig(**kw, save_steps=4).rollout_boundary_steps == 2
    with pytest.raises(ConfigFieldError, match="save_steps.*multiple of 2"):
        DRPOConfig(**kw, save_steps=3)
    # the default: 4 updates per rollout, so checkpoints fall every 4 optimizer steps
    assert DRPOConfig(output_dir=str(tmp_path), use_cpu=True).rollout_boundary_steps == 4
    assert (
        DRPOConfig(output_dir=str(tmp_path), use_cpu=True, updates_per_rollout=1).rollout_boundary_steps == 1
    )


def test_defaults_follow_the_paper_and_its_official_config(tmp_path):
    """4 updates per rollout (verl: 128 prompts per rollout, mini-batches of 32), so π_old ≠ π_θ can
    happen; AdamW weight decay 0.01 and a constant learning rate (verl's defaults); the GRPO baselines
    average per sequence (TRL loss_type "grpo")."""
    args = DRPOConfig(output_dir=str(tmp_path), use_cpu=True, gradient_accumulation_steps=2)
    assert args.steps_per_generation == 8 and args.leaves_old_policy
    assert (args.weight_decay, args.lr_scheduler_type, args.loss_type) == (0.01, "constant", "grpo")
    assert (args.learning_rate, args.beta, args.num_generations, args.temperature) == (2e-6, 0.0, 8, 0.6)
    # an explicit steps_per_generation or generation_batch_size wins over updates_per_rollout
    assert (
        DRPOConfig(output_dir=str(tmp_path), use_cpu=True, steps_per_generation=2).steps_per_generation == 2
    )
    with pytest.raises(ConfigFieldError, match="updates_per_rollout"):
        DRPOConfig(output_dir=str(tmp_path), use_cpu=True, updates_per_rollout=0)


@pytest.mark.parametrize(
    ("settings", "warns"),
    [
        ({"updates_per_rollout": 1}, True),
        ({"steps_per_generation": 2, "gradient_accumulation_steps": 4}, True),  # 2 rollouts per update
        ({"steps_per_generation": 2, "gradient_accumulation_steps": 1}, False),
        ({"steps_per_generation": 1, "num_iterations": 2}, False),  # each rollout used twice
        ({"updates_per_rollout": 1, "trust_region_beta": 0.0}, False),  # no trust region to act
        ({"updates_per_rollout": 1, "objective": "grpo"}, False),
    ],
)
def test_warns_when_the_trust_region_can_never_act(tmp_path, caplog, settings, warns):
    with caplog.at_level("WARNING", logger="posttrain.trainers.drpo_config"):
        DRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=8, **settings)
    messages = [r.getMessage() for r in caplog.records if "trust region never acts" in r.getMessage()]
    assert len(messages) == int(warns)


@pytest.mark.parametrize("objective", ["drpo", "disco"])
def test_reference_model_kl_is_refused_for_drpo(tmp_path, objective):
    with pytest.raises(ConfigFieldError, match="beta.*reference-model KL is not implemented"):
        DRPOConfig(output_dir=str(tmp_path), use_cpu=True, objective=objective, beta=0.04)
    # the GRPO baselines keep TRL's reference KL
    assert DRPOConfig(output_dir=str(tmp_path), use_cpu=True, objective="grpo", beta=0.04).beta == 0.04


def test_truncation_flags_follow_trls_clipped_ratio_rule():
    eos, pad = 2, 0
    ids = [[5, 6, 2], [5, 6, 7], [5, 0], [], [2]]
    assert truncation_flags(ids, [eos, pad]) == [False, True, False, False, False]
    assert truncation_flags(ids, [eos, None]) == [False, True, True, False, False]


def test_reward_specs_resolve_or_name_the_mistake():
    from posttrain.errors import UserError
    from posttrain.rewards.math import math_correctness
    from posttrain.rewards.registry import resolve_reward

    assert resolve_reward("math_correctness") is math_correctness
    assert resolve_reward("drpo_test_rewards:parity", allow_custom=True) is parity
    # module:function runs code the recipe names: only with drpo.allow_custom_rewards
    with pytest.raises(UserError, match="drpo.allow_custom_rewards: true"):
        resolve_reward("drpo_test_rewards:parity")
    with pytest.raises(UserError, match="did you mean 'math_correctness'"):
        resolve_reward("math_corectness")
    with pytest.raises(UserError, match="cannot import"):
        resolve_reward("no_such_module:f", allow_custom=True)


@pytest.mark.integration
def test_recipe_trains_then_evaluates_held_out_math(tiny_model_dir, tmp_path, monkeypatch):
    """`posttrain train` on a DRPO recipe with `evaluate.math`: the saved policy is sampled on held-out
    problems and the results land in the run summary and output_dir/eval/math."""
    import json

    from helpers import ROOT

    from posttrain.train import run_train

    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    problems = tmp_path / "sums.jsonl"
    problems.write_text(
        "".join(json.dumps({"problem": f"{i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(8))
    )
    recipe = tmp_path / "drpo.yaml"
    recipe.write_text(
        f"""# Launch: posttrain train {recipe}
method: drpo
output_dir: {tmp_path / "out"}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data: {{train: {{path: {problems}, format: math}}}}
drpo: {{num_generations: 4, max_completion_length: 6, rewards: ["drpo_test_rewards:parity"], allow_custom_rewards: true}}
training: {{max_steps: 2, per_device_train_batch_size: 8, logging_steps: 1, save_strategy: "no", report_to: none}}
evaluate:
  math: {{benchmarks: ["{problems}"], limit: 3, samples: 2, max_new_tokens: 4}}
"""
    )
    summary = run_train(str(recipe), [], progress=False)
    math = summary["evaluate"]["math"]
    assert list(math["benchmarks"]) == ["sums"] and math["benchmarks"]["sums"]["problems"] == 3
    written = json.loads((tmp_path / "out" / "eval" / "math" / "results.json").read_text())
    assert written["average"] == math["average"]
    assert 0.0 <= math["average"]["pass@1"] <= 1.0
    rows = [
        json.loads(line)
        for line in (tmp_path / "out" / "eval" / "math" / "samples.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 3 * 2


def test_math_evaluation_is_for_policies(tmp_path):
    from helpers import DEMO

    from posttrain.errors import UserError
    from posttrain.recipe import load_recipe

    recipe = tmp_path / "cpl.yaml"
    recipe.write_text(
        f"""method: cpl
output_dir: {tmp_path / "out"}
model: {{name_or_path: embedded:smollm2-135m-instruct}}
data: {{train: {{path: {DEMO / "preferences.jsonl"}}}}}
evaluate: {{math: {{benchmarks: [gsm8k]}}}}
"""
    )
    with pytest.raises(UserError, match="evaluate.math"):
        load_recipe(str(recipe))

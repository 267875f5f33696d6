"""TRL conventions and dependencies between recipes: a TRL flat config is explained as a recipe, TRL's
`solution` column feeds math_correctness, and a recipe whose reward model another recipe trains says so."""

from __future__ import annotations

import pytest
from helpers import ROOT, run_posttrain

from posttrain.errors import UserError
from posttrain.recipe import load_recipe
from posttrain.rewards.math import math_correctness, math_correctness_lenient


def test_a_trl_flat_config_is_answered_with_the_recipe_it_maps_to(tmp_path):
    path = tmp_path / "dpo.yaml"
    path.write_text(
        "model_name_or_path: Qwen/Qwen2-0.5B-Instruct\ndataset_name: trl-lib/ultrafeedback_binarized\n"
        "learning_rate: 5.0e-7\nper_device_train_batch_size: 2\noutput_dir: Qwen2-0.5B-DPO\n"
    )
    proc = run_posttrain("validate", path, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    message = proc.stderr
    assert "missing required key 'method'" in message and "looks like a TRL config" in message
    for expected in (
        "trl dpo → method: cpl",
        "model_name_or_path → model.name_or_path",
        "dataset_name → data.train.hub",
        "(learning_rate, per_device_train_batch_size) go under training:",
    ):
        assert expected in message, expected
    plain = tmp_path / "plain.yaml"
    plain.write_text("output_dir: x\n")
    with pytest.raises(UserError) as info:
        load_recipe(str(plain))
    assert "TRL" not in str(info.value)


def test_math_correctness_reads_trl_solution_column():
    completions = [
        [{"role": "assistant", "content": "so \\boxed{4}"}],
        [{"role": "assistant", "content": "\\boxed{5}"}],
    ]
    by_answer = math_correctness(["p", "p"], completions, answer=["4", "4"])
    by_solution = math_correctness(["p", "p"], completions, solution=["4", "4"])
    assert by_answer == by_solution == [1.0, 0.0]
    assert math_correctness_lenient(["p", "p"], completions, solution=["4", "5"]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="'answer' \\(or TRL's 'solution'\\)"):
        math_correctness(["p"], completions[:1])


def test_validate_names_a_missing_reward_model_and_the_recipe_that_trains_it(tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    (recipes / "rm").mkdir(parents=True)
    (recipes / "rm" / "maker.yaml").write_text("method: rlbff\noutput_dir: outputs/not-trained-yet-rm\n")
    monkeypatch.setenv("POSTTRAIN_RECIPES", str(recipes))
    base = [
        "training.max_steps=1",
        "drpo.num_generations=2",
        "training.per_device_train_batch_size=2",
    ]
    with pytest.raises(
        UserError,
        match=r"reward model outputs/not-trained-yet-rm does not exist yet; train it "
        r"first: posttrain train rm/maker",
    ):
        load_recipe(
            str(ROOT / "recipes" / "drpo" / "quickstart.yaml"),
            [*base, 'drpo.rewards=["principle_rm=outputs/not-trained-yet-rm"]'],
        )
    with pytest.raises(UserError, match="reward model not found: ./no/such/rm"):
        load_recipe(
            str(ROOT / "recipes" / "drpo" / "quickstart.yaml"),
            [*base, 'drpo.rewards=["principle_rm=./no/such/rm"]'],
        )
    rm = tmp_path / "rm"
    rm.mkdir()
    load_recipe(
        str(ROOT / "recipes" / "drpo" / "quickstart.yaml"), [*base, f'drpo.rewards=["principle_rm={rm}"]']
    )
    load_recipe(
        str(ROOT / "recipes" / "drpo" / "quickstart.yaml"), [*base, 'drpo.rewards=["principle_rm=org/rm"]']
    )


def test_bundled_principle_grpo_recipe_says_how_to_make_its_reward_model():
    if (ROOT / "outputs" / "rlbff-quickstart").exists():
        pytest.skip("the RM has been trained in this checkout")
    with pytest.raises(UserError, match="posttrain train rlbff/quickstart"):
        load_recipe("rlbff/grpo-principle-quickstart")

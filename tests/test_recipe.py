"""Recipe validation (unknown keys, types, ranges, files, overrides) and the CLI's error contract."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import DEMO, ROOT

from posttrain.errors import UserError
from posttrain.methods import get_method
from posttrain.recipe import apply_overrides, load_recipe

RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))
PAIRS = str(DEMO / "preferences.jsonl")
PAIRS_EVAL = str(DEMO / "preferences_eval.jsonl")

BASE = {
    "method": "cpl",
    "description": "test recipe",
    "output_dir": "OUT",  # replaced by the tmp_path output dir
    "model": {"name_or_path": "embedded:smollm2-135m-instruct", "dtype": "float32"},
    "data": {
        "train": {"path": PAIRS, "format": "pairs"},
        "eval": {"path": PAIRS_EVAL, "format": "pairs"},
        "max_length": 128,
        "max_prompt_length": 64,
    },
    "cpl": {"alpha": 0.1, "bias": 0.5},
    "training": {"learning_rate": 1.0e-5, "max_steps": 5, "save_strategy": "no", "report_to": "none"},
}


def _set(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def make_recipe(tmp_path: Path, changes: dict | None = None, remove: tuple[str, ...] = (), **base) -> Path:
    """BASE with ``changes`` (dotted key → value) applied and ``remove`` top-level keys deleted."""
    data = copy.deepcopy(BASE)
    data["output_dir"] = str(tmp_path / "run")
    for key, value in base.items():
        data[key] = value
    for dotted, value in (changes or {}).items():
        _set(data, dotted, value)
    for key in remove:
        data.pop(key)
    path = tmp_path / "recipe.yaml"
    path.write_text("# Launch: posttrain train recipe.yaml\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def load_error(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(UserError) as info:
        load_recipe(str(path), overrides)
    return str(info.value)


# --------------------------------------------------------------------------------------------------
# Bundled recipes


def test_recipes_exist():
    assert RECIPES, "no recipes under recipes/"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_bundled_recipe_validates(path):
    try:
        recipe = load_recipe(str(path))
    except UserError as exc:  # its reward model is another recipe's output, not trained in this checkout
        assert "does not exist yet; train it first: posttrain train rlbff/" in str(exc)
        recipe = load_recipe(str(path), check_files=False)
    # GPU recipes ask for bf16, which this CPU cannot check; everything else is validated
    config = get_method(recipe.method).build_config(recipe, hardware_neutral=True)
    assert config.output_dir == recipe.output_dir
    assert recipe.description, "a bundled recipe needs a description for `posttrain recipes`"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_bundled_recipe_first_line_is_launch_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), f"{path}: first line must be a comment with the launch command"
    assert "posttrain train" in first or "accelerate launch" in first, first
    assert str(path.relative_to(ROOT)) in first, "the launch command must name this recipe"
    words = first.split()
    if "--config_file" in words:
        launch = ROOT / words[words.index("--config_file") + 1]
        assert launch.is_file(), f"{path}: launch config {launch} does not exist"


def test_base_recipe_validates(tmp_path):
    recipe = load_recipe(str(make_recipe(tmp_path)))
    config = get_method("cpl").build_config(recipe)
    assert (config.alpha, config.bias, config.max_steps) == (0.1, 0.5, 5)
    # data/model keys land in the config
    assert (config.max_length, config.max_prompt_length) == (128, 64)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------
# Unknown keys, wrong types and ranges


UNKNOWN_KEYS = [
    ("trainig", {"max_steps": 3}, "training"),
    ("model.dtpye", "float32", "dtype"),
    ("model.lora.rr", 8, "r"),
    ("data.train.fromat", "pairs", "format"),
    ("data.eval.pth", PAIRS_EVAL, "path"),
    ("data.max_lenght", 64, "max_length"),
    ("cpl.alhpa", 0.2, "alpha"),
    ("training.learnig_rate", 1e-4, "learning_rate"),
]


@pytest.mark.parametrize(("dotted", "value", "nearest"), UNKNOWN_KEYS, ids=[c[0] for c in UNKNOWN_KEYS])
def test_unknown_key_names_path_and_nearest(tmp_path, dotted, value, nearest):
    msg = load_error(make_recipe(tmp_path, {dotted: value}))
    assert f"unknown key '{dotted}'" in msg
    assert f"did you mean '{nearest}'" in msg
    assert str(tmp_path / "recipe.yaml") in msg


@pytest.mark.parametrize(
    ("dotted", "value", "shown"),
    [
        ("model.dtype", "fp33", "'fp33'"),
        ("cpl.bias", 2.0, "2.0"),
        ("cpl.bias", 0.0, "0.0"),
        ("cpl.alpha", -1.0, "-1.0"),
        ("cpl.gamma", "high", "'high'"),
        ("training.max_steps", "abc", "'abc'"),
        ("training.learning_rate", -1.0, "-1.0"),
        ("data.max_length", -1, "-1"),
        ("data.train.limit", 0, "0"),
        ("data.overlong", "cut", "'cut'"),
        ("model.lora.dropout", 1.5, "1.5"),
    ],
)
def test_bad_value_names_yaml_path(tmp_path, dotted, value, shown):
    msg = load_error(make_recipe(tmp_path, {dotted: value}))
    assert f"{dotted}:" in msg, msg
    assert shown in msg, msg
    assert "\n" not in msg


def test_prompt_length_must_be_below_max_length(tmp_path):
    msg = load_error(make_recipe(tmp_path, {"data.max_prompt_length": 128}))
    assert "data:" in msg and "max_prompt_length must be smaller than max_length" in msg


def test_data_source_needs_path_or_hub(tmp_path):
    msg = load_error(make_recipe(tmp_path, {"data.train": {"format": "pairs"}}))
    assert "data.train" in msg and "'path'" in msg and "'hub'" in msg


def test_missing_data_file_is_named(tmp_path):
    missing = tmp_path / "nope.jsonl"
    msg = load_error(make_recipe(tmp_path, {"data.train.path": str(missing)}))
    assert "data.train.path" in msg and str(missing) in msg and "not found" in msg
    msg = load_error(make_recipe(tmp_path, {"data.eval.path": "missing_eval.jsonl"}))
    assert "data.eval.path" in msg and "missing_eval.jsonl" in msg


def test_missing_local_model_is_named(tmp_path):
    msg = load_error(make_recipe(tmp_path, {"model.name_or_path": str(tmp_path / "no-model")}))
    assert "model.name_or_path" in msg and "no-model" in msg


def test_unknown_embedded_model(tmp_path):
    msg = load_error(make_recipe(tmp_path, {"model.name_or_path": "embedded:smollm2-135m-instruc"}))
    assert "did you mean 'smollm2-135m-instruct'" in msg


def test_missing_method(tmp_path):
    msg = load_error(make_recipe(tmp_path, remove=("method",)))
    assert "missing required key 'method'" in msg and "cpl" in msg


def test_unknown_method_did_you_mean(tmp_path):
    msg = load_error(make_recipe(tmp_path, method="cp1"))
    assert "unknown method 'cp1'" in msg and "did you mean 'cpl'" in msg


def test_missing_required_key(tmp_path):
    msg = load_error(make_recipe(tmp_path, remove=("output_dir",)))
    assert "missing required key 'output_dir'" in msg


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("method: cpl\nmodel: {name_or_path: x\n")
    msg = load_error(path)
    assert "invalid YAML" in msg and "line" in msg


def test_unknown_recipe_name():
    with pytest.raises(UserError, match="recipe not found: cpl/quickstrat"):
        load_recipe("cpl/quickstrat")


def test_bundled_recipe_by_short_name():
    assert load_recipe("cpl/quickstart").source == str(ROOT / "recipes" / "cpl" / "quickstart.yaml")


# --------------------------------------------------------------------------------------------------
# Overrides


def test_overrides_create_and_replace(tmp_path):
    path = make_recipe(tmp_path)
    overrides = ["training.max_steps=3", "cpl.alpha=0.2", "model.lora.r=8", "training.learning_rate=1e-4"]
    recipe = load_recipe(str(path), overrides)
    assert recipe.training["max_steps"] == 3
    # YAML 1.1 reads '1e-4' as a string; the typed training field turns it into the float
    assert recipe.training["learning_rate"] == 1e-4 and isinstance(recipe.training["learning_rate"], float)
    # the resolved method section holds every hyperparameter, defaults included
    assert recipe.method_args["alpha"] == 0.2 and recipe.method_args["bias"] == 0.5
    assert recipe.method_args["gamma"] == 1.0 and recipe.method_args["bc_warmup_steps"] == 0
    assert recipe.model.lora is not None and recipe.model.lora.r == 8
    assert recipe.model.lora.alpha == 32  # the rest of a created section keeps its defaults
    config = get_method("cpl").build_config(recipe)
    assert (config.max_steps, config.alpha) == (3, 0.2)


def test_apply_overrides_parses_yaml_values():
    data = apply_overrides(
        {"training": {"max_steps": 1}},
        ["training.max_steps=7", "training.learning_rate=1.0e-4", "a.b.c=[x, y]", "flag=true", "empty="],
    )
    assert data == {
        "training": {"max_steps": 7, "learning_rate": 1e-4},
        "a": {"b": {"c": ["x", "y"]}},
        "flag": True,
        "empty": None,
    }


@pytest.mark.parametrize("override", ["training.max_steps", "=3", "method.x=1"])
def test_malformed_override(tmp_path, override):
    with pytest.raises(UserError, match="override"):
        load_recipe(str(make_recipe(tmp_path)), [override])


def test_override_values_are_validated(tmp_path):
    path = make_recipe(tmp_path)
    assert "cpl.bias" in load_error(path, ["cpl.bias=5"])
    assert "did you mean 'learning_rate'" in load_error(path, ["training.learnig_rate=1e-4"])


# --------------------------------------------------------------------------------------------------
# Resolved recipe


def test_to_dict_round_trip(tmp_path):
    recipe = load_recipe(str(make_recipe(tmp_path)), ["cpl.bc_weight=0.5"])
    resolved = recipe.to_dict()
    assert list(resolved)[-2:] == ["cpl", "training"]
    assert {k: resolved["cpl"][k] for k in ("alpha", "bias", "bc_weight")} == {
        "alpha": 0.1,
        "bias": 0.5,
        "bc_weight": 0.5,
    }
    assert resolved["cpl"]["length_normalize"] is False  # defaults are written out too
    assert resolved["training"]["max_steps"] == 5
    assert "method_args" not in resolved and "source" not in resolved
    again = tmp_path / "resolved.yaml"
    again.write_text(yaml.safe_dump(resolved, sort_keys=False))
    assert load_recipe(str(again)).to_dict() == resolved


# --------------------------------------------------------------------------------------------------
# CLI: one `error:` line, exit code 2, nothing written (a few subprocesses; each pays the import time)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "posttrain", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_user_error(proc: subprocess.CompletedProcess, output_dir: Path) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not output_dir.exists()
    return lines[0]


CLI_CASES = {
    # validate stops before transformers is imported; train goes through the trainer config
    "validate-unknown-key": (
        "validate",
        {"trainig": {"max_steps": 1}},
        ["'trainig'", "did you mean 'training'"],
    ),
    # several pydantic errors at once are still one line
    "validate-several-errors": (
        "validate",
        {"model.dtype": "fp33", "model.dtpye": "float32"},
        ["model.dtype", "'model.dtpye'"],
    ),
    "train-bad-range": ("train", {"cpl.bias": 2.0}, ["cpl.bias", "(0, 1]"]),
    # TrainingArguments' own multi-line ValueError
    "train-trainer-args": (
        "train",
        {"training.load_best_model_at_end": True, "training.eval_strategy": "steps"},
        ["training:", "load_best_model_at_end"],
    ),
    "train-missing-data": ("train", {"data.train.path": "nowhere/train.jsonl"}, ["nowhere/train.jsonl"]),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_recipe(tmp_path, tiny_model_dir, case):
    command, changes, expected = CLI_CASES[case]
    path = make_recipe(tmp_path, {"model.name_or_path": str(tiny_model_dir), **changes})
    line = assert_user_error(run_cli(command, str(path), cwd=tmp_path), tmp_path / "run")
    for text in expected:
        assert text in line, line


def test_cli_train_bad_data_record(tmp_path, tiny_model_dir):
    data = tmp_path / "train.jsonl"
    data.write_text(
        '{"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."}\n'
        '{"prompt": "2 + 2?", "chosen": "4."}\n'
    )
    path = make_recipe(
        tmp_path, {"model.name_or_path": str(tiny_model_dir), "data.train.path": str(data), "data.eval": None}
    )
    line = assert_user_error(run_cli("train", str(path), cwd=tmp_path), tmp_path / "run")
    assert str(data) in line and "record 2" in line and "'rejected'" in line, line


def test_cli_recipes_lists_bundled(tmp_path):
    proc = run_cli("recipes", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    description = load_recipe("cpl/quickstart").description
    line = next(line for line in proc.stdout.splitlines() if line.startswith("cpl/quickstart "))
    assert "[cpl]" in line and description in line


def test_override_no_stays_a_string(tmp_path):
    from posttrain.recipe import apply_overrides

    data = apply_overrides({}, ["training.eval_strategy=no", "training.bf16=false", "cpl.kl_reference=true"])
    assert data == {"training": {"eval_strategy": "no", "bf16": False}, "cpl": {"kl_reference": True}}

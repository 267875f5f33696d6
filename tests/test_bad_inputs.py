"""Every bad input ends in one clear line (issue 16): exit code 2, exactly one ``error:`` line naming the field,
file or record, no traceback, nothing written.

Most cases call the CLI in-process (``posttrain.cli.main``): a traceback there is an uncaught exception, which
fails the test. A few run it as a subprocess to check the whole of stderr.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import DEMO, ROOT
from test_recipe import make_recipe, run_cli

from posttrain.cli import main

PRINCIPLES = str(ROOT / "data" / "rlbff" / "principles_test.jsonl")


def tree(path: Path) -> dict[str, bytes] | None:
    """Every file under ``path`` with its bytes (None if ``path`` is absent): "nothing written" compares it."""
    try:
        if not path.exists():
            return None
    except OSError:  # e.g. a name too long for the filesystem: nothing can be there
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def cli_error(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI in-process: exit 2 and exactly one ``error:`` line holding every ``expected`` text."""
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def assert_subprocess_error(proc, *expected: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------------------
# 1. Model loading: train, score, eval rm-bench and eval principles


def _missing(good: Path, tmp: Path) -> str:
    return str(tmp / "no-such-model")


def _empty(good: Path, tmp: Path) -> str:
    (tmp / "empty").mkdir()
    return str(tmp / "empty")


def _copy(good: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(good, tmp / "model"))


def _corrupt_weights(good: Path, tmp: Path) -> str:
    model = _copy(good, tmp)
    (model / "model.safetensors").write_bytes(os.urandom(4096))
    return str(model)


def _truncated_weights(good: Path, tmp: Path) -> str:
    model = _copy(good, tmp)
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    return str(model)


def _bad_config(good: Path, tmp: Path) -> str:
    model = _copy(good, tmp)
    (model / "config.json").write_text('{"model_type": "llama",')
    return str(model)


def _config_without_type(good: Path, tmp: Path) -> str:
    model = _copy(good, tmp)
    (model / "config.json").write_text('{"hidden_size": 64}')
    return str(model)


def _no_weights(good: Path, tmp: Path) -> str:
    model = _copy(good, tmp)
    (model / "model.safetensors").unlink()
    return str(model)


def _no_tokenizer(good: Path, tmp: Path) -> str:
    model = _copy(good, tmp)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).unlink()
    return str(model)


def _fake_gguf(good: Path, tmp: Path) -> str:
    (tmp / "model.gguf").write_text("not a gguf file")
    return str(tmp / "model.gguf")


def _hub_offline(good: Path, tmp: Path) -> str:
    return "posttrain-test/not-cached-model"


BROKEN_MODELS = {
    "missing-folder": (_missing, ["no-such-model", "not found"]),
    "empty-folder": (_empty, ["empty folder"]),
    "corrupt-safetensors": (_corrupt_weights, ["model.safetensors", "corrupt"]),
    "truncated-safetensors": (_truncated_weights, ["model.safetensors", "truncated"]),
    "bad-config-json": (_bad_config, ["config.json", "not valid JSON"]),
    "config-without-model-type": (_config_without_type, ["config.json", "model_type"]),
    "no-weights": (_no_weights, ["no weights"]),
    "no-tokenizer": (_no_tokenizer, ["no tokenizer"]),
    "fake-gguf": (_fake_gguf, ["model.gguf", "not a GGUF file"]),
    "hub-id-offline": (_hub_offline, ["posttrain-test/not-cached-model", "HF_HUB_OFFLINE"]),
}


@pytest.fixture
def principle_input(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"context": "2 + 2?", "response": "4.", "principle": "The answer is correct"}))
    return path


@pytest.fixture
def rm_bench_file(tmp_path) -> Path:
    path = tmp_path / "chat_filtered.json"
    record = {"id": 1, "prompt": "Hi?", "chosen": ["a", "b", "c"], "rejected": ["d", "e", "f"]}
    path.write_text(json.dumps([record]))
    return path


@pytest.mark.parametrize("command", ["train", "validate", "score", "rm-bench", "principles", "math"])
@pytest.mark.parametrize("case", list(BROKEN_MODELS))
def test_broken_model_is_one_line(
    tmp_path, capsys, monkeypatch, tiny_model_dir, principle_input, rm_bench_file, case, command
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    build, expected = BROKEN_MODELS[case]
    model = build(tiny_model_dir, tmp_path)
    out = tmp_path / "run"
    if command in ("train", "validate"):
        if case == "hub-id-offline" and command == "validate":
            pytest.skip("validate reads no hub: a hub id is checked when it loads")
        recipe = make_recipe(tmp_path, {"model.name_or_path": model, "data.eval": None})
        argv = [command, str(recipe)]
        field = "model.name_or_path"
    elif command == "score":
        argv = ["score", "--model", model, "--input", str(principle_input), "--out", str(out / "s.jsonl")]
        field = "--model"
    elif command == "rm-bench":
        argv = ["eval", "rm-bench", "--model", model, "--data", str(rm_bench_file), "--out", str(out)]
        field = "--model"
    elif command == "principles":
        argv = ["eval", "principles", "--model", model, "--data", PRINCIPLES, "--limit", "4"]
        argv += ["--out", str(out)]
        field = "--model"
    else:
        gsm = tmp_path / "gsm8k.json"
        gsm.write_text(json.dumps([{"problem": "1+1?", "answer": "2"}]))
        argv = ["eval", "math", "--model", model, "--benchmarks", str(gsm), "--backend", "hf"]
        argv += ["--out", str(out)]
        field = "--model"
    cli_error(capsys, argv, field, *expected)
    assert not out.exists()


def test_missing_recipe_tokenizer(tmp_path, capsys, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for tokenizer, expected in ((str(tmp_path / "no-tok"), "not found"), ("org/no-tok", "HF_HUB_OFFLINE")):
        recipe = make_recipe(
            tmp_path,
            {"model.name_or_path": str(tiny_model_dir), "model.tokenizer": tokenizer, "data.eval": None},
        )
        cli_error(capsys, ["train", str(recipe)], "model.tokenizer", tokenizer, expected)
        assert not (tmp_path / "run").exists()


def test_broken_model_subprocess_stderr_is_one_line(tmp_path, tiny_model_dir):
    """The whole of stderr, as a user sees it: no warning or progress bar before the error line."""
    model = _truncated_weights(tiny_model_dir, tmp_path)
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"context": "Hi", "response": "Hello", "principle": "Kind"})
    )
    proc = run_cli("score", "--model", model, "--input", "in.jsonl", "--out", "out/s.jsonl", cwd=tmp_path)
    assert_subprocess_error(proc, "--model", "truncated")
    assert not (tmp_path / "out").exists()
    recipe = make_recipe(tmp_path, {"model.name_or_path": "posttrain-test/absent", "data.eval": None})
    assert_subprocess_error(
        run_cli("train", str(recipe), cwd=tmp_path), "model.name_or_path", "HF_HUB_OFFLINE"
    )
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------
# 2. Values that passed validate and stopped the run after the model loaded: now refused by validate


def _long_dir(tmp: Path) -> str:
    return str(tmp / ("x" * 300))


def _file_dir(tmp: Path) -> str:
    (tmp / "a-file").write_text("not a folder")
    return str(tmp / "a-file")


VALUES_CHECKED_BEFORE_LOAD = {
    "batch-size-0": ({"training.per_device_train_batch_size": 0}, ["training.per_device_train_batch_size"]),
    "eval-batch-size-0": (
        {"training.per_device_eval_batch_size": 0},
        ["training.per_device_eval_batch_size"],
    ),
    "grad-accumulation-0": (
        {"training.gradient_accumulation_steps": 0},
        ["training.gradient_accumulation_steps"],
    ),
    "eval-steps-without-eval-data": (
        {"training.eval_strategy": "steps", "data.eval": None},
        ["training.eval_strategy", "data.eval"],
    ),
    "unknown-attn-implementation": (
        {"model.attn_implementation": "flash_atention_2"},
        ["model.attn_implementation"],
    ),
    "unknown-tracker": ({"training.report_to": "wandbb"}, ["training.report_to", "unknown tracker 'wandbb'"]),
    "uninstalled-tracker": (
        {"training.report_to": ["none", "posttrain_test_tracker"]},
        [
            "training.report_to",
            "'posttrain_test_tracker' is not installed",
            "pip install posttrain-test-tracker",
        ],
    ),
    "output-dir-too-long": ({"output_dir": _long_dir}, ["output_dir", "too long"]),
    "output-dir-is-a-file": ({"output_dir": _file_dir}, ["output_dir", "a-file", "is a file"]),
    "save-steps-0": ({"training.save_strategy": "steps", "training.save_steps": 0}, ["training.save_steps"]),
}


@pytest.fixture
def fake_uninstalled_tracker(monkeypatch):
    """A tracker transformers knows of but is not installed here (whatever trackers this machine has)."""
    from transformers.integrations import integration_utils

    from posttrain import recipe

    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "posttrain_test_tracker", object)
    monkeypatch.setitem(recipe.TRACKER_PACKAGES, "posttrain_test_tracker", "posttrain-test-tracker")


@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("case", list(VALUES_CHECKED_BEFORE_LOAD))
def test_values_checked_before_load(
    tmp_path, capsys, monkeypatch, tiny_model_dir, fake_uninstalled_tracker, case, command
):
    changes, expected = VALUES_CHECKED_BEFORE_LOAD[case]
    changes = {k: v(tmp_path) if callable(v) else v for k, v in changes.items()}
    out = Path(changes.get("output_dir", tmp_path / "run"))
    before = tree(out)
    recipe = make_recipe(tmp_path, {"model.name_or_path": str(tiny_model_dir), **changes})
    # the model must never be read: a broken one would be named first otherwise
    import posttrain.models

    monkeypatch.setattr(posttrain.models, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    cli_error(capsys, [command, str(recipe)], str(recipe), *expected)
    assert tree(out) == before


# --------------------------------------------------------------------------------------------------
# 3. Parsing gaps: recipes that are not text or have non-string keys, corrupt .gz data, hub data offline


def _binary_recipe(tmp: Path) -> Path:
    path = tmp / "binary.yaml"
    path.write_bytes(bytes(range(256)) * 8)
    return path


def _int_key(tmp: Path, text: str) -> Path:
    path = make_recipe(tmp)
    path.write_text(path.read_text() + text)
    return path


BAD_RECIPE_FILES = {
    "binary": (_binary_recipe, ["binary.yaml", "not a text file"]),
    "int-key-top": (lambda tmp: _int_key(tmp, "123: x\n"), ["recipe.yaml", "key 123 is not a string"]),
    "int-key-nested": (
        lambda tmp: _int_key(tmp, "evaluate: {math: {5: x}}\n"),
        ["recipe.yaml", "key evaluate.math.5 is not a string"],
    ),
}


@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("case", list(BAD_RECIPE_FILES))
def test_bad_recipe_file(tmp_path, capsys, case, command):
    build, expected = BAD_RECIPE_FILES[case]
    cli_error(capsys, [command, str(build(tmp_path))], *expected)
    assert not (tmp_path / "run").exists()


def _gz(tmp: Path, damage) -> str:
    import gzip

    data = bytearray(gzip.compress((DEMO / "preferences.jsonl").read_bytes() * 3))
    path = tmp / "train.jsonl.gz"
    path.write_bytes(damage(data))
    return str(path)


def _flip(data: bytearray) -> bytes:
    for i in range(200, 260):
        data[i] ^= 0xFF
    return bytes(data)


BAD_DATA = {
    "gz-truncated": (
        lambda tmp: {"data.train.path": _gz(tmp, lambda d: bytes(d[: len(d) // 2]))},
        ["train.jsonl.gz"],
    ),
    "gz-corrupt-stream": (lambda tmp: {"data.train.path": _gz(tmp, _flip)}, ["train.jsonl.gz"]),
    "gz-not-gzip": (
        lambda tmp: {"data.train.path": _gz(tmp, lambda d: b"plain text, not gzip\n" * 4)},
        ["train.jsonl.gz"],
    ),
    "hub-dataset-offline": (
        lambda tmp: {"data.train.path": None, "data.train.hub": "posttrain-test/not-cached-data"},
        ["posttrain-test/not-cached-data", "offline"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_source(tmp_path, capsys, monkeypatch, tiny_model_dir, case):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    build, expected = BAD_DATA[case]
    changes = {"model.name_or_path": str(tiny_model_dir), "data.eval": None, **build(tmp_path)}
    cli_error(capsys, ["train", str(make_recipe(tmp_path, changes))], *expected)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------
# 4. No silent acceptance: NaN scores, negative --limit, a bad last line of an input file, an empty
# --input, another run's output folder (train and every evaluator)


def test_nan_score_in_ranked_data_is_refused(tmp_path, capsys, tiny_model_dir):
    data = tmp_path / "ranked.jsonl"
    good = {"prompt": "Hi?", "responses": ["Hello.", "Go away."], "scores": [1, 0]}
    data.write_text(
        json.dumps(good) + "\n" + '{"prompt": "2+2?", "responses": ["4", "5"], "scores": [NaN, 0]}\n'
    )
    changes = {
        "model.name_or_path": str(tiny_model_dir),
        "data.train": {"path": str(data), "format": "ranked"},
    }
    recipe = make_recipe(tmp_path, {**changes, "data.eval": None})
    cli_error(capsys, ["train", str(recipe)], str(data), "record 2", "'scores'", "non-finite")
    assert not (tmp_path / "run").exists()


def _mt_bench_dir(tmp: Path, question_text: str | None = None, template: str | None = None) -> Path:
    from test_mt_bench import QUESTIONS, REFERENCES, TEMPLATES, _write_jsonl

    root = tmp / "mt_bench"
    _write_jsonl(root / "question.jsonl", QUESTIONS)
    if question_text is not None:
        (root / "question.jsonl").write_text(question_text)
    templates = [dict(t) for t in TEMPLATES]
    if template is not None:
        templates[0]["prompt_template"] = template
    _write_jsonl(root / "judge_prompts.jsonl", templates)
    _write_jsonl(root / "reference_answer" / "gpt-4.jsonl", REFERENCES)
    return root


def _feedback_file(tmp: Path, annotators: int = 1) -> Path:
    path = tmp / "feedback.jsonl"
    feedback = ["The answer is correct but too long."] * annotators
    record = {"context": "What is 2+2?", "response": "4, because ...", "feedback": feedback}
    path.write_text(json.dumps(record) + "\n")
    return path


def _limit_argv(tmp: Path, model: Path, limit: str) -> dict[str, list[str]]:
    gsm = tmp / "gsm8k.json"
    gsm.write_text(json.dumps([{"problem": "1+1?", "answer": "2"}]))
    return {
        "eval-principles": ["eval", "principles", "--model", str(model), "--data", PRINCIPLES],
        "eval-rm-bench": [
            "eval",
            "rm-bench",
            "--model",
            str(model),
            "--data",
            str(tmp / "chat_filtered.json"),
        ],
        "eval-math": ["eval", "math", "--model", str(model), "--benchmarks", str(gsm)],
        "eval-mt-bench": [
            "eval",
            "mt-bench",
            "--model",
            "x",
            "--judge",
            "y",
            "--data",
            str(_mt_bench_dir(tmp)),
        ],
        "principles-extract": ["principles", "extract", "--data", str(_feedback_file(tmp)), "--model", "m"],
    }


@pytest.mark.parametrize("limit", ["-1", "0"])
@pytest.mark.parametrize(
    "command", ["eval-principles", "eval-rm-bench", "eval-math", "eval-mt-bench", "principles-extract"]
)
def test_limit_below_one_is_refused(tmp_path, capsys, tiny_model_dir, rm_bench_file, command, limit):
    out = tmp_path / "out"
    argv = _limit_argv(tmp_path, tiny_model_dir, limit)[command]
    cli_error(capsys, [*argv, "--limit", limit, "--out", str(out)], "--limit must be at least 1", limit)
    assert not out.exists()


@pytest.mark.parametrize(
    "bad_last_line", ['{"question_id": 4, "category": "writing", "turns": ["a"', "not json"]
)
def test_mt_bench_question_file_with_a_bad_last_line(tmp_path, capsys, bad_last_line):
    from test_mt_bench import QUESTIONS

    text = "".join(json.dumps(q) + "\n" for q in QUESTIONS) + bad_last_line  # no newline: looks "torn"
    data = _mt_bench_dir(tmp_path, question_text=text)
    out = tmp_path / "out"
    argv = ["eval", "mt-bench", "--model", "x", "--judge", "y", "--data", str(data), "--out", str(out)]
    cli_error(capsys, argv, "question.jsonl", "line 4", "not valid JSON")
    assert not out.exists()


def test_empty_score_input(tmp_path, capsys, tiny_model_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out" / "scores.jsonl"
    argv = [
        "score",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(empty),
        "--principle",
        "p",
        "--out",
        str(out),
    ]
    cli_error(capsys, argv, "--input", "empty.jsonl", "no records")
    assert not out.parent.exists()


def _foreign_out(tmp: Path, files: dict[str, str]) -> Path:
    out = tmp / "out"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    return out


FOREIGN_RUN = json.dumps({"model": "someone/else"})


@pytest.mark.parametrize(
    "with_run_file", [True, False], ids=["run.json-of-another-model", "results-without-run.json"]
)
@pytest.mark.parametrize("command", ["eval-principles", "eval-rm-bench", "eval-math"])
def test_evaluations_refuse_another_runs_out(
    tmp_path, capsys, tiny_model_dir, rm_bench_file, command, with_run_file
):
    results = {
        "eval-principles": "principle_eval.json",
        "eval-rm-bench": "results.json",
        "eval-math": "results.json",
    }
    files = {results[command]: "{}", **({"run.json": FOREIGN_RUN} if with_run_file else {})}
    out = _foreign_out(tmp_path, files)
    before = tree(out)
    argv = _limit_argv(tmp_path, tiny_model_dir, "1")[command]
    expected = "other settings" if with_run_file else "no run.json"
    line = cli_error(
        capsys, [*argv, "--limit", "1", "--out", str(out)], f"--out {out}", expected, "--overwrite"
    )
    assert tree(out) == before, line


def test_eval_principles_out_is_resumable_and_overwritable(tmp_path, capsys, tiny_model_dir):
    """The same command again is fine (its run.json matches); another model needs --overwrite."""
    out = tmp_path / "out"
    argv = ["eval", "principles", "--model", str(tiny_model_dir), "--data", PRINCIPLES, "--limit", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["model"] == str(tiny_model_dir)
    assert main([*argv, "--out", str(out)]) == 0
    other = _copy(tiny_model_dir, tmp_path)
    argv[3] = str(other)
    cli_error(capsys, [*argv, "--out", str(out)], "other settings (model)")
    assert main([*argv, "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "run.json").read_text())["model"] == str(other)


@pytest.mark.integration  # trains twice (1 step each)
def test_train_refuses_a_folder_holding_another_recipes_run(tmp_path, capsys, tiny_model_dir):
    base = {"model.name_or_path": str(tiny_model_dir), "data.eval": None, "training.max_steps": 1}
    first = make_recipe(tmp_path, base)
    assert main(["train", str(first)]) == 0
    out = tmp_path / "run"
    assert (out / "run_summary.json").is_file()
    before = tree(out)
    other = make_recipe(tmp_path, {**base, "training.learning_rate": 3.0e-5})
    cli_error(
        capsys,
        ["train", str(other)],
        f"output_dir {out}",
        "finished run",
        "training.learning_rate",
        "--overwrite",
    )
    assert tree(out) == before
    # the same recipe again is a rerun, not another recipe; --overwrite replaces the run
    assert main(["train", str(other), "--overwrite"]) == 0
    assert "learning_rate: 3.0e-05" in (out / "recipe.yaml").read_text()


# --------------------------------------------------------------------------------------------------
# 5. Nothing written before validation: chat flags and endpoints, the embedding model, judge templates,
# score's temporary file, an --out under a file


def _chat_flag_cases(url: str) -> dict[str, tuple[list[str], list[str]]]:
    return {
        "concurrency-0": (["--concurrency", "0"], ["--concurrency must be at least 1"]),
        "timeout-0": (["--timeout", "0"], ["--timeout must be above 0"]),
        "max-retries-negative": (["--max-retries", "-1"], ["--max-retries must be at least 0"]),
        "url-without-api-model": (["--model", url], ["--model", url, "--api-model"]),
        "url-with-hf-backend": (
            ["--model", url, "--api-model", "m", "--backend", "hf"],
            ["'openai' backend"],
        ),
    }


CHAT_FLAG_CASES = list(_chat_flag_cases("http://127.0.0.1:9/v1"))


@pytest.mark.parametrize("case", CHAT_FLAG_CASES)
@pytest.mark.parametrize("command", ["mt-bench", "extract"])
def test_chat_flags_checked_before_run_json(tmp_path, capsys, case, command):
    from openai_stub import OpenAIStub

    with OpenAIStub() as stub:
        extra, expected = _chat_flag_cases(stub.url)[case]
        out = tmp_path / "out"
        if command == "mt-bench":
            argv = ["eval", "mt-bench", "--model", stub.url, "--api-model", "p", "--judge", stub.url]
            argv += ["--judge-api-model", "j", "--data", str(_mt_bench_dir(tmp_path))]
        else:
            argv = ["principles", "extract", "--data", str(_feedback_file(tmp_path)), "--model", stub.url]
            argv += ["--api-model", "p"]
        if "--model" in extra:  # replaces the --model/--api-model pair given above
            i = argv.index("--model")
            del argv[i : i + 2]
            j = argv.index("--api-model")
            del argv[j : j + 2]
        cli_error(capsys, [*argv, *extra, "--out", str(out)], *expected)
        assert not out.exists() and not stub.requests


def test_mt_bench_judge_api_model_checked_before_run_json(tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "eval",
        "mt-bench",
        "--model",
        "http://127.0.0.1:9/v1",
        "--api-model",
        "p",
        "--judge",
        "http://127.0.0.1:9/v1",
    ]
    cli_error(capsys, [*argv, "--data", str(_mt_bench_dir(tmp_path)), "--out", str(out)], "--judge-api-model")
    assert not out.exists()


def test_unknown_embedding_model_before_any_model_call(tmp_path, capsys):
    from openai_stub import OpenAIStub

    out = tmp_path / "out"
    with OpenAIStub(responder=lambda messages: "[]") as stub:
        argv = [
            "principles",
            "extract",
            "--data",
            str(_feedback_file(tmp_path, annotators=2)),
            "--model",
            stub.url,
        ]
        argv += [
            "--api-model",
            "p",
            "--embedding-model",
            str(tmp_path / "no-such-embedder"),
            "--out",
            str(out),
        ]
        cli_error(capsys, argv)  # the embedder is named, or the packages it needs
        assert not stub.requests and not out.exists()


def test_judge_template_with_unknown_placeholder(tmp_path, capsys):
    data = _mt_bench_dir(tmp_path, template="Q={question} A={answer} SCORE={rubric}")
    out = tmp_path / "out"
    argv = ["eval", "mt-bench", "--model", "x", "--judge", "y", "--data", str(data), "--out", str(out)]
    cli_error(capsys, argv, "judge_prompts.jsonl", "single-v1", "{rubric}")
    assert not out.exists()


def test_score_failure_leaves_no_tmp_file(tmp_path, capsys, monkeypatch, tiny_model_dir, principle_input):
    from posttrain.errors import UserError
    from posttrain.rewards.principle import PrincipleRewardModel

    def fail(self, *args, **kwargs):
        raise UserError("scoring failed (test)")

    monkeypatch.setattr(PrincipleRewardModel, "score", fail)
    out = tmp_path / "out" / "scores.jsonl"
    argv = ["score", "--model", str(tiny_model_dir), "--input", str(principle_input), "--out", str(out)]
    cli_error(capsys, argv, "scoring failed")
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("command", ["rm-bench", "principles", "math", "score"])
def test_out_under_a_file_refused_before_the_model_loads(
    tmp_path, capsys, monkeypatch, tiny_model_dir, rm_bench_file, principle_input, command
):
    from posttrain.rewards.principle import PrincipleRewardModel

    monkeypatch.setattr(PrincipleRewardModel, "from_pretrained", lambda *a, **k: pytest.fail("model loaded"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "out"
    argv = {
        "rm-bench": _limit_argv(tmp_path, tiny_model_dir, "1")["eval-rm-bench"],
        "principles": _limit_argv(tmp_path, tiny_model_dir, "1")["eval-principles"],
        "math": _limit_argv(tmp_path, tiny_model_dir, "1")["eval-math"],
        "score": ["score", "--model", str(tiny_model_dir), "--input", str(principle_input)],
    }[command]
    target = str(out / "s.jsonl") if command == "score" else str(out)
    cli_error(capsys, [*argv, "--out", target], "a-file")
    assert blocker.read_text() == "x"


# --------------------------------------------------------------------------------------------------
# 6. Empty results are not a success


def test_mt_bench_without_a_usable_judgment_exits_1(tmp_path, capsys):
    from openai_stub import OpenAIStub

    out = tmp_path / "out"
    with OpenAIStub(responder=lambda messages: "I would rather not say.") as stub:
        argv = ["eval", "mt-bench", "--model", stub.url, "--api-model", "p", "--judge", stub.url]
        argv += ["--judge-api-model", "j", "--data", str(_mt_bench_dir(tmp_path)), "--out", str(out)]
        rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no usable judgment" in errors[0] and "6 judged" in errors[0]
    assert (out / "results.json").is_file()  # the summary is written and printed
    assert "turn 1" in captured.out.lower() or "overall" in captured.out.lower()


def test_extraction_with_no_principle_written_exits_1(tmp_path, capsys):
    from openai_stub import OpenAIStub

    out = tmp_path / "out"
    with OpenAIStub(responder=lambda messages: "[]") as stub:
        argv = ["principles", "extract", "--data", str(_feedback_file(tmp_path)), "--model", stub.url]
        rc = main([*argv, "--api-model", "p", "--keep-single-annotator", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no principle records written" in errors[0]
    assert "principle records written" in captured.out and (out / "counts.json").is_file()


# --------------------------------------------------------------------------------------------------
# 7. Security: the API key never printed; the SLURM template quotes overrides; custom rewards are opt-in

API_KEY = "sk-posttrain-test-0123456789abcdef"


@pytest.mark.parametrize("status", [401, 500], ids=["rejected-at-once", "retried-then-failed"])
@pytest.mark.parametrize("command", ["mt-bench", "extract"])
def test_api_key_echoed_by_the_server_is_masked(tmp_path, capsys, monkeypatch, status, command):
    from openai_stub import OpenAIStub

    monkeypatch.setenv("POSTTRAIN_TEST_CRED", API_KEY)  # a name that does not look secret: --api-key-env says
    out = tmp_path / "out"
    with OpenAIStub(echo_auth_status=status) as stub:
        if command == "mt-bench":
            argv = ["eval", "mt-bench", "--model", stub.url, "--api-model", "p", "--judge", stub.url]
            argv += ["--judge-api-model", "j", "--data", str(_mt_bench_dir(tmp_path)), "--limit", "1"]
        else:
            argv = ["principles", "extract", "--data", str(_feedback_file(tmp_path)), "--model", stub.url]
            argv += ["--api-model", "p"]
        argv += [
            "--api-key-env",
            "POSTTRAIN_TEST_CRED",
            "--max-retries",
            "1",
            "--timeout",
            "5",
            "--out",
            str(out),
        ]
        monkeypatch.setattr("posttrain.chat_backends.MAX_WAIT", 0.01, raising=False)
        rc = main(argv)
        assert stub.requests and any(API_KEY in v for v in stub.requests[0]["headers"].values())
    captured = capsys.readouterr()
    assert rc in (1, 2), captured.err
    assert API_KEY not in captured.err and API_KEY not in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "***" in captured.err, captured.err


def _fake_tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def test_slurm_template_passes_overrides_as_arguments(tmp_path):
    """launch/slurm.sbatch run by bash with stand-ins for scontrol, srun and accelerate (no SLURM here):
    each override reaches posttrain as one argument, and shell syntax inside one is never executed."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "scontrol", "echo node-a; echo node-b\n")
    _fake_tool(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')  # run the command
    received = tmp_path / "argv.json"
    _fake_tool(
        bin_dir,
        "accelerate",
        f"exec {os.sys.executable} -c \"import json, sys; json.dump(sys.argv[1:], open('{received}', 'w'))\" \"$@\"\n",
    )
    overrides = [
        "training.run_name=two words",
        "description=x; touch pwned-semicolon",
        "output_dir=$(touch pwned-subshell)",
        "model.chat_template=`touch pwned-backtick`",
        'data.train.path=it\'s "quoted"',
    ]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "node-[a-b]",
        "SLURM_NNODES": "2",
        "SLURM_NODEID": "1",
        "GPUS_PER_NODE": "8",
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "launch" / "slurm.sbatch"), "recipes/cpl/quickstart.yaml", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    argv = json.loads(received.read_text())
    assert argv[: argv.index("-m")] == [
        "launch",
        "--config_file",
        "launch/deepspeed_zero3.yaml",
        "--num_machines",
        "2",
        "--num_processes",
        "16",
        "--machine_rank",
        "1",
        "--main_process_ip",
        "node-a",
        "--main_process_port",
        "29500",
        "--rdzv_backend",
        "c10d",
    ]
    assert argv[argv.index("-m") :] == ["-m", "posttrain", "train", "recipes/cpl/quickstart.yaml", *overrides]
    assert not list(tmp_path.glob("pwned*"))


def _drpo_recipe(tmp: Path, model: Path, extra: str = "") -> Path:
    path = tmp / "drpo.yaml"
    path.write_text(
        f"""method: drpo
output_dir: {tmp / "run"}
model: {{name_or_path: {model}, dtype: float32}}
data:
  train: {{path: {ROOT / "data" / "drpo" / "arithmetic_train.jsonl"}, format: math, limit: 4}}
drpo: {{num_generations: 4, max_completion_length: 6, rewards: ["os:getcwd"]{extra}}}
training: {{max_steps: 1, per_device_train_batch_size: 4, save_strategy: "no", report_to: none}}
"""
    )
    return path


@pytest.mark.parametrize("command", ["validate", "train"])
def test_module_function_rewards_need_an_explicit_opt_in(
    tmp_path, capsys, monkeypatch, tiny_model_dir, command
):
    import importlib

    imported = []
    real_import = importlib.import_module
    monkeypatch.setattr(
        importlib, "import_module", lambda name, *a: imported.append(name) or real_import(name, *a)
    )
    recipe = _drpo_recipe(tmp_path, tiny_model_dir)
    cli_error(
        capsys, [command, str(recipe)], "drpo.rewards", "'os:getcwd'", "drpo.allow_custom_rewards: true"
    )
    assert "os" not in imported and not (tmp_path / "run").exists()
    opted_in = _drpo_recipe(tmp_path, tiny_model_dir, ", allow_custom_rewards: true")
    assert main(["validate", str(opted_in)]) == 0

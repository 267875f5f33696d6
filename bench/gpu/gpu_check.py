"""GPU throughput and peak memory of the quickstart recipes (bf16) and of ZeRO-3 on one GPU.

    python -m bench.gpu.gpu_check --out DIR [--budget-s 330] [--only NAME,...] [--cpu-smoke] [--list]

Run by ``bench/gpu/run.sh`` on the GPU machine (see bench/gpu/README.md). Every measured run is a separate
process (``python -m bench.gpu.worker train``, or the same under ``accelerate launch`` with launch/deepspeed_zero3.yaml)
with its own timeout; a failure or a timeout is recorded with the tail of its log and the next run starts.
Runs go in order of importance and none starts once the time budget is too short for it, so the script
ends inside ``--budget-s`` (plus a few seconds for the report) whatever happens.

Models are randomly initialised (weights are not what is measured) with the SmolLM2-135M-Instruct
architecture and the real SmolLM2 tokenizer (both from the embedded model, ``embedded:smollm2-135m-instruct``),
and a SmolLM2-1.7B-shaped model with the same tokenizer; they are built on the machine first (``worker build``).

Writes to ``--out``: gpu_results.json (everything, per-step times included), gpu_results.md (the table),
run_logs.tar.gz (each run's full log), rewritten after every run so a kill leaves the finished runs.

``--cpu-smoke`` proves the plumbing on a machine without a GPU: a 2-layer 135M-shaped model, 2-3 steps,
fp32, CPU (the ZeRO-3 runs may fail there: that is recorded as their status).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORKER = ["-m", "bench.gpu.worker"]  # processes run from ROOT
ZERO3_CONFIG = ROOT / "launch" / "deepspeed_zero3.yaml"


@dataclass
class Run:
    name: str
    recipe: str
    shape: str  # "135m" | "1.7b"
    engine: str  # "single" | "zero3"
    steps: int
    timeout_s: int
    extra: list[str] = field(default_factory=list)
    smoke_extra: list[str] = field(default_factory=list)


# In order of importance: the bf16 quickstarts first, then the scale where the GPU matters, then ZeRO-3.
RUNS = [
    Run("cpl-135m-bf16", "recipes/cpl/quickstart.yaml", "135m", "single", 20, 100),
    Run("rlbff-principle-135m-bf16", "recipes/rlbff/quickstart.yaml", "135m", "single", 20, 100),
    Run("rlbff-bt-135m-bf16", "recipes/rlbff/quickstart-bt.yaml", "135m", "single", 20, 100),
    Run(
        "drpo-135m-bf16",
        "recipes/drpo/quickstart.yaml",
        "135m",
        "single",
        10,
        150,
        smoke_extra=["drpo.max_completion_length=16"],
    ),
    Run("cpl-1.7b-bf16", "recipes/cpl/quickstart.yaml", "1.7b", "single", 15, 150),
    Run("cpl-1.7b-zero3", "recipes/cpl/quickstart.yaml", "1.7b", "zero3", 12, 180),
    Run("rlbff-principle-1.7b-zero3", "recipes/rlbff/quickstart.yaml", "1.7b", "zero3", 12, 180),
]

ENGINE_LABEL = {"single": "1 GPU, no DeepSpeed", "zero3": "DeepSpeed ZeRO-3, 1 GPU"}
SHAPE_LABEL = {"135m": "SmolLM2-135M shape", "1.7b": "SmolLM2-1.7B shape"}


def now() -> float:
    return time.monotonic()


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tail(path: Path, lines: int = 40, chars: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    # progress bars rewrite one line with \r: keep the last state of each line
    rows = [row.rsplit("\r", 1)[-1] for row in text.splitlines()]
    return "\n".join(rows[-lines:])[-chars:]


_CURRENT: subprocess.Popen | None = None  # the run in flight, ended with us if we are stopped


def _stop(proc: subprocess.Popen) -> None:
    """End a run's whole process group (accelerate launch → torchrun → worker): TERM, then KILL."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _on_term(signum, frame):
    if _CURRENT is not None:
        _stop(_CURRENT)
    raise SystemExit(128 + signum)


def run_process(cmd: list[str], log_path: Path, timeout: float, env: dict) -> tuple[int | None, float, bool]:
    """Run ``cmd`` in its own process group; returns (exit code, seconds, timed out)."""
    global _CURRENT
    start = now()
    with log_path.open("w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        _CURRENT = proc
        try:
            code = proc.wait(timeout=max(timeout, 1))
            return code, now() - start, False
        except subprocess.TimeoutExpired:
            _stop(proc)
            return None, now() - start, True
        finally:
            _CURRENT = None


class Check:
    def __init__(self, ns: argparse.Namespace):
        self.smoke = ns.cpu_smoke
        self.out = Path(ns.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(ns.work or tempfile.mkdtemp(prefix="posttrain-gpu-check-")).resolve()
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.start = now()
        self.deadline = self.start + ns.budget_s
        self.min_start_s = 20 if self.smoke else 40
        self.env = self._env()
        self.models: dict[str, dict] = {}
        self.results: dict = {
            "what": "posttrain GPU check: throughput and peak memory of the quickstart recipes "
            "(random-init models, real tokenizer)",
            "mode": "cpu-smoke" if self.smoke else "gpu",
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "budget_s": ns.budget_s,
            "environment": {},
            "models": self.models,
            "runs": [],
        }
        only = set(ns.only.split(",")) if ns.only else None
        self.runs = [r for r in RUNS if only is None or r.name in only]

    def _env(self) -> dict:
        env = dict(os.environ)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "WANDB_DISABLED": "true",
                "MPLBACKEND": "Agg",
                "MPLCONFIGDIR": str(self.work / "mpl"),
                "HF_HOME": str(self.work / "hf"),
                "POSTTRAIN_CACHE": str(self.work / "posttrain-cache"),
                "TRITON_CACHE_DIR": str(self.work / "triton"),
            }
        )
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(ROOT)) if p)
        if self.smoke:
            env["CUDA_VISIBLE_DEVICES"] = ""
            env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def remaining(self) -> float:
        return self.deadline - now()

    # -- steps ------------------------------------------------------------------------------------

    def environment(self) -> None:
        path = self.work / "env.json"
        cmd = [sys.executable, *WORKER, "env", "--out", str(path)]
        code, secs, timed_out = run_process(cmd, self.logs / "env.log", min(60, self.remaining()), self.env)
        if code == 0 and path.exists():
            self.results["environment"] = json.loads(path.read_text())
        else:
            self.results["environment"] = {"error": tail(self.logs / "env.log", 20)}
        log(f"environment: {json.dumps(self.results['environment'])}")

    def model(self, shape: str) -> dict:
        if shape in self.models:
            return self.models[shape]
        out = self.work / "models" / shape
        cmd = [sys.executable, *WORKER, "build", "--out", str(out), "--shape", shape]
        cmd += ["--layers", "2", "--device", "cpu"] if self.smoke else ["--device", "cuda"]
        if shape == "1.7b" and self.smoke:
            cmd[cmd.index("--shape") + 1] = "135m"  # the plumbing, not the size, is what the smoke run checks
        budget = min(150, self.remaining() - self.min_start_s)
        if budget < 10:
            info = {"status": "skipped: time budget"}
        else:
            log(f"building the {shape} model ...")
            code, secs, timed_out = run_process(cmd, self.logs / f"build-{shape}.log", budget, self.env)
            if code == 0 and (out / "bench_model.json").exists():
                info = {
                    "status": "ok",
                    "path": str(out),
                    **json.loads((out / "bench_model.json").read_text()),
                }
                info["build_wall_s"] = round(secs, 1)
            else:
                why = "timeout" if timed_out else f"failed (exit {code})"
                info = {"status": why, "log_tail": tail(self.logs / f"build-{shape}.log")}
        log(f"model {shape}: {info.get('status')} {info.get('params', '')}")
        self.models[shape] = info
        return info

    def command(self, run: Run, model_dir: str, metrics: Path, index: int) -> list[str]:
        steps = (2 if run.name.startswith("drpo") else 3) if self.smoke else run.steps
        warmup = 1 if self.smoke else 2
        overrides = [
            f"model.name_or_path={model_dir}",
            f"output_dir={self.work / 'runs' / run.name}",
            "evaluate=",
            "data.eval=",
            "training.eval_strategy=no",
            "training.save_strategy=no",
            "training.report_to=none",
            f"training.max_steps={steps}",
            f"training.bf16={'false' if self.smoke else 'true'}",
            *run.extra,
            *(run.smoke_extra if self.smoke else []),
        ]
        worker = [*WORKER, "train", "--recipe", run.recipe, "--metrics", str(metrics)]
        worker += ["--warmup", str(warmup), *overrides]
        if run.engine == "single":
            return [sys.executable, *worker]
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ZERO3_CONFIG)]
        launch += ["--num_processes", "1", "--num_machines", "1", "--main_process_port", str(29611 + index)]
        if self.smoke:
            launch += ["--mixed_precision", "no"]
        return [*launch, *worker]

    def measure(self, run: Run, index: int) -> dict:
        row = {
            "run": run.name,
            "recipe": run.recipe,
            "model": SHAPE_LABEL[run.shape] + (" (2-layer smoke)" if self.smoke else ""),
            "engine": ENGINE_LABEL[run.engine],
            "precision": (
                "fp32 (CPU smoke)"
                if self.smoke
                else "bf16 AMP, fp32 weights"
                if run.engine == "single"
                else "bf16 (DeepSpeed), fp32 master"
            ),
        }
        model = self.model(run.shape)
        if model.get("status") != "ok":
            return {**row, "status": f"skipped: model build {model.get('status')}"}
        left = self.remaining()
        if left < self.min_start_s:
            return {**row, "status": f"skipped: time budget ({left:.0f} s left)"}
        metrics = self.work / "metrics" / f"{run.name}.json"
        metrics.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(run, model["path"], metrics, index)
        timeout = min(run.timeout_s * (2 if self.smoke else 1), left - 5)
        log(f"{run.name}: starting (timeout {timeout:.0f} s)")
        code, secs, timed_out = run_process(cmd, self.logs / f"{run.name}.log", timeout, self.env)
        row["wall_s"] = round(secs, 1)
        row["command"] = " ".join(cmd)
        data = json.loads(metrics.read_text()) if metrics.exists() else {}
        row.update(data)
        if timed_out:
            row["status"] = f"timeout after {secs:.0f} s" + (" (training had finished)" if data else "")
        elif code != 0:
            row["status"] = f"failed (exit {code})"
        else:
            row["status"] = data.get("status", "no metrics written")
        if row["status"] != "ok":
            row["log_tail"] = tail(self.logs / f"{run.name}.log")
        log(f"{run.name}: {row['status']} in {secs:.0f} s; median step {row.get('median_step_s')}")
        return row

    # -- report -----------------------------------------------------------------------------------

    def write(self) -> None:
        self.results["elapsed_s"] = round(now() - self.start, 1)
        path = self.out / "gpu_results.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.results, indent=2, default=str))
        path.with_suffix(".tmp").replace(path)
        (self.out / "gpu_results.md").write_text(markdown(self.results))
        with tarfile.open(self.out / "run_logs.tar.gz", "w:gz") as tar:
            for p in sorted(self.logs.glob("*.log")):
                tar.add(p, arcname=f"run_logs/{p.name}")

    def main(self) -> int:
        log(f"mode {self.results['mode']}, budget {self.remaining():.0f} s, work dir {self.work}")
        in_flight = None
        try:
            self.environment()
            self.write()
            for i, run in enumerate(self.runs):
                in_flight = run.name
                self.results["runs"].append(self.measure(run, i))
                in_flight = None
                self.write()
        finally:
            if in_flight is not None:  # stopped from outside (run.sh's timeout): say so in the report
                self.results["runs"].append({"run": in_flight, "status": "stopped from outside"})
                self.write()
        log(f"done in {now() - self.start:.0f} s; results in {self.out}")
        print(markdown(self.results), flush=True)
        return 0


def _num(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "–"


def markdown(results: dict) -> str:
    env = results.get("environment", {})
    lines = [
        f"# posttrain GPU check ({results['mode']})",
        "",
        f"Machine: {env.get('device', '?')}; torch {env.get('torch', '?')} (CUDA {env.get('cuda', '?')}), "
        f"transformers {env.get('transformers', '?')}, trl {env.get('trl', '?')}, "
        f"deepspeed {env.get('deepspeed', '?')}, accelerate {env.get('accelerate', '?')}. "
        f"Started {results['started']}, {results.get('elapsed_s', '?')} s.",
        "",
        "Random-init weights (throughput and memory only, not quality). Median step = median wall time "
        "between consecutive optimizer steps after the warm-up steps; tokens/s = non-pad tokens of the "
        "training batches ÷ that time; samples/s = per-device batch × accumulation ÷ step time. "
        "Peak memory = torch.cuda.max_memory_allocated / max_memory_reserved over the whole process.",
        "",
        "| run | model | engine | precision | steps (timed) | median step s | tokens/s | samples/s "
        "| peak allocated GiB | peak reserved GiB | status |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    models = results.get("models", {})
    for r in results["runs"]:
        shape = "1.7b" if "1.7B" in r.get("model", "") else "135m"
        params = models.get(shape, {}).get("params")
        model = r.get("model", "") + (f", {params / 1e6:.0f}M params" if params else "")
        steps = f"{r.get('steps_recorded', '–')} ({r.get('steps_timed', '–')})"
        lines.append(
            f"| {r['run']} | {model} | {r.get('engine', '')} | {r.get('precision', '')} | {steps} "
            f"| {_num(r.get('median_step_s'), '.3f')} | {_num(r.get('tokens_per_s'), ',.0f')} "
            f"| {_num(r.get('samples_per_s'), '.1f')} | {_num(r.get('peak_allocated_gib'), '.2f')} "
            f"| {_num(r.get('peak_reserved_gib'), '.2f')} | {r.get('status', '')} |"
        )
    rollouts = [r for r in results["runs"] if r.get("median_rollout_s") is not None]
    if rollouts:
        lines += [
            "",
            "DRPO step split (medians over the timed steps; rollout = generate + decode + rewards + "
            "old log-probs, HF generate, no vLLM):",
            "",
            "| run | step s | rollout s | of which generate s | optimise s | generated tokens/s |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in rollouts:
            lines.append(
                f"| {r['run']} | {_num(r.get('median_step_s'), '.3f')} | {_num(r.get('median_rollout_s'), '.3f')} "
                f"| {_num(r.get('median_generate_s'), '.3f')} | {_num(r.get('median_optimize_s'), '.3f')} "
                f"| {_num(r.get('generated_tokens_per_s'), ',.0f')} |"
            )
    failed = [r for r in results["runs"] if r.get("status") != "ok" and r.get("log_tail")]
    for r in failed:
        lines += ["", f"<details><summary>{r['run']}: {r['status']}</summary>", "", "```"]
        lines += [r["log_tail"][-2500:], "```", "</details>"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or str(HERE / "out"))
    parser.add_argument(
        "--work", help="scratch folder for models, run outputs and logs (default: a temp dir)"
    )
    parser.add_argument("--budget-s", type=float, default=330, help="stop starting runs after this (s)")
    parser.add_argument("--only", help="comma-separated run names")
    parser.add_argument("--cpu-smoke", action="store_true", help="2-layer model, 2-3 steps, fp32, CPU")
    parser.add_argument("--list", action="store_true", help="list the runs and exit")
    ns = parser.parse_args(argv)
    if ns.list:
        for r in RUNS:
            print(
                f"{r.name:28} {r.recipe:36} {r.shape:5} {r.engine:6} {r.steps} steps, timeout {r.timeout_s} s"
            )
        return 0
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    return Check(ns).main()


if __name__ == "__main__":
    sys.exit(main())

"""FSDP2 on one GPU: each trainer's first losses under FSDP2 equal a plain single-GPU run's.

accelerate enables FSDP only on GPU-class devices (posttrain refuses FSDP on CPU), so this is where the FSDP2
path is checked: for every quickstart recipe (and LoRA variants), one plain run (`python -m posttrain train`)
and one FSDP2 run (`accelerate launch --config_file launch/fsdp2.yaml --num_processes 1`), both fp32, a few
steps on a random-init SmolLM2-135M-shaped model (``python -m bench.gpu.worker build``); the logged losses are compared.
One GPU shards nothing, but the whole FSDP2 path runs: fully_shard wrapping, sharded parameters (DTensor),
the FSDP optimizer, gradient reduction, and the full-state-dict save.

    python -m bench.gpu.fsdp2_check --out DIR [--only NAME,...]

Writes DIR/fsdp2_check.json and DIR/fsdp2_check.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER = ["-m", "bench.gpu.worker"]  # run from ROOT

CASES = {  # name -> (recipe, extra overrides)
    "cpl": ("recipes/cpl/quickstart.yaml", []),
    "rlbff-yes_no": ("recipes/rlbff/quickstart.yaml", []),
    "rlbff-bt": ("recipes/rlbff/quickstart-bt.yaml", []),
    "drpo": ("recipes/drpo/quickstart.yaml", ["training.max_steps=2"]),
    "cpl-lora": ("recipes/cpl/quickstart.yaml", ["model.lora.r=8", "model.lora.save_merged=true"]),
    "rlbff-yes_no-lora": ("recipes/rlbff/quickstart.yaml", ["model.lora.r=8", "model.lora.save_merged=true"]),
}


def run(cmd: list[str], log: Path, timeout: float) -> tuple[int, float]:
    start = time.time()
    with log.open("w") as fh:
        try:
            code = subprocess.run(
                cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            code = -9
    return code, time.time() - start


def losses(out: Path) -> list[float] | None:
    path = out / "log_history.json"
    if not path.is_file():
        return None
    return [row["loss"] for row in json.loads(path.read_text()) if "loss" in row]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per training run")
    ns = parser.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fsdp2-check-"))
    model = work / "model"
    code, _ = run(
        [sys.executable, *WORKER, "build", "--out", str(model), "--shape", "135m"],
        ns.out / "build.log",
        300,
    )
    if code != 0:
        print(f"model build failed (exit {code}); see build.log", flush=True)
        return 1
    names = ns.only.split(",") if ns.only else list(CASES)
    rows = []
    for name in names:
        recipe, extra = CASES[name]
        common = [
            f"model.name_or_path={model}",
            "model.dtype=float32",
            "evaluate=",
            "data.eval=",
            "training.eval_strategy=no",
            "training.save_strategy=no",
            "training.report_to=none",
            "training.logging_steps=1",
            "training.max_steps=3",
            *extra,
        ]
        row = {"case": name, "recipe": recipe, "overrides": extra}
        for engine in ("plain", "fsdp2"):
            out = work / f"{name}-{engine}"
            train = ["-m", "posttrain", "train", recipe, f"output_dir={out}", *common]
            if engine == "plain":
                cmd = [sys.executable, *train]
            else:
                cmd = [
                    sys.executable,
                    "-m",
                    "accelerate.commands.launch",
                    "--config_file",
                    "launch/fsdp2.yaml",
                ]
                cmd += ["--num_processes", "1", "--mixed_precision", "no", "--main_process_port", "0", *train]
            code, secs = run(cmd, ns.out / f"{name}-{engine}.log", ns.timeout)
            summary = out / "run_summary.json"
            row[engine] = {
                "exit": code,
                "seconds": round(secs, 1),
                "losses": losses(out),
                "distributed_type": json.loads(summary.read_text())["distributed_type"]
                if summary.is_file()
                else None,
                "merged_saved": (out / "merged" / "config.json").is_file(),
                "adapter_saved": (out / "adapter_model.safetensors").is_file(),
            }
            print(f"{name} {engine}: exit {code} in {secs:.0f} s, losses {row[engine]['losses']}", flush=True)
        a, b = row["plain"]["losses"], row["fsdp2"]["losses"]
        row["max_rel_diff"] = (
            max(abs(x - y) / max(abs(x), 1e-6) for x, y in zip(a, b))
            if a and b and len(a) == len(b)
            else None
        )
        ok = row["max_rel_diff"] is not None and row["max_rel_diff"] < 1e-3
        ok = ok and row["fsdp2"]["distributed_type"] == "FSDP"
        row["status"] = "ok" if ok else "MISMATCH or failure"
        rows.append(row)
        (ns.out / "fsdp2_check.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "| case | plain losses | FSDP2 losses | max rel. diff | FSDP2 engine | adapter / merged saved | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        fmt = lambda xs: ", ".join(f"{x:.4f}" for x in xs) if xs else "-"  # noqa: E731
        diff = f"{r['max_rel_diff']:.1e}" if r["max_rel_diff"] is not None else "-"
        saved = (
            f"{r['fsdp2']['adapter_saved']} / {r['fsdp2']['merged_saved']}" if "lora" in r["case"] else "-"
        )
        lines.append(
            f"| {r['case']} | {fmt(r['plain']['losses'])} | {fmt(r['fsdp2']['losses'])} | {diff} | "
            f"{r['fsdp2']['distributed_type']} | {saved} | {r['status']} |"
        )
    table = "\n".join(lines)
    (ns.out / "fsdp2_check.md").write_text(table + "\n")
    print(table, flush=True)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

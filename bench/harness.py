"""What every benchmark in bench/ shares: A/B alternation, step timing, peak memory, machine facts, outputs.

Method (each script's docstring says what it times):

- A warm-up round, then ``repeats`` rounds; every round runs each arm once and the order within a round
  alternates (AB, BA, AB, …), so drift of the machine (thermal, other load) hits both arms alike.
- Reported: medians; a ratio A/B is median(A) / median(B) with the min–max spread of the per-round ratios.
- Peak memory in a separate, untimed pass: CUDA max_memory_allocated on GPU; on CPU the peak resident set
  size sampled every 5 ms (psutil), also as the rise above the RSS just before the region.
- ``--threads 1`` on a shared CPU: with several OpenMP threads a descheduled thread stalls every operator at
  its barrier and times become noise.

Each script writes ``bench/results/<name>.json`` (settings, machine, raw per-round numbers, a ``targets``
list read by :mod:`bench.summary`) and ``<name>.md`` (its table).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from posttrain.trainers.utils import checkpointing_field  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_MODEL = "embedded:smollm2-135m-instruct"


def progress(tag: str, message: str) -> None:
    print(f"[{tag}] {message}", file=sys.stderr, flush=True)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory of a region in MiB: CUDA peak allocated, or on CPU the sampled peak RSS above the start."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.cuda = torch.cuda.is_available()
        self.peak_mib: float | None = None  # absolute peak (CUDA allocated / RSS)
        self.delta_mib: float | None = None  # peak above the value at the start of the region

    def _rss(self) -> int:
        return self._proc.memory_info().rss

    def __enter__(self):
        if self.cuda:
            sync()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        try:
            import psutil
        except ImportError:  # no sampler: fall back to the process high-water mark
            self._proc = None
            return self
        self._proc = psutil.Process()
        self._base = self._peak = self._rss()
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(self.interval):
                self._peak = max(self._peak, self._rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        mib = 1024**2
        if self.cuda:
            sync()
            peak = torch.cuda.max_memory_allocated()
            self.peak_mib, self.delta_mib = peak / mib, (peak - self._base) / mib
        elif self._proc is None:
            import resource

            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._rss())
            self.peak_mib, self.delta_mib = self._peak / mib, (self._peak - self._base) / mib
        return False

    def as_dict(self) -> dict:
        return {"peak_mib": self.peak_mib, "delta_mib": self.delta_mib}


def memory_kind() -> str:
    if torch.cuda.is_available():
        return "CUDA max_memory_allocated (absolute, + the rise during the region)"
    return (
        "peak RSS of the whole process with every arm loaded (+ the rise during the region, psutil sampled "
        "every 5 ms); the allocator keeps freed memory, so the rise is approximate"
    )


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "raw": values}


def ratio_block(a: list[float], b: list[float]) -> dict:
    """median(a) / median(b), with the spread of the per-round (paired) ratios a_i / b_i."""
    ratios = [x / y for x, y in zip(a, b)]
    return {
        "ratio_median": statistics.median(a) / statistics.median(b),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratios": ratios,
    }


def alternate(tag: str, label: str, names: Sequence[str], repeats: int, run: Callable) -> dict[str, list]:
    """A warm-up round, then ``repeats`` rounds of ``run(name)`` for every arm; the order alternates."""
    for name in names:
        progress(tag, f"{label}: warm-up {name}")
        run(name)
    out: dict[str, list] = {name: [] for name in names}
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            out[name].append(run(name))
            progress(tag, f"{label}: round {rep + 1}/{repeats} {name} {time.perf_counter() - start:.2f} s")
    return out


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step, on_step_begin → on_step_end: forward, backward, clipping and the
    optimizer (``trainer.train()`` fetches the batch before and logs after, so neither is counted)."""

    def __init__(self):
        self.times: list[float] = []
        self._begin = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        sync()
        self._begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        sync()
        self.times.append(time.perf_counter() - self._begin)


def attach_timer(trainer, timer: StepTimer | None = None) -> StepTimer:
    """Add ``timer`` (a new StepTimer by default) to ``trainer`` and drop the one-line-per-step printer."""
    from transformers.trainer_callback import PrinterCallback

    timer = timer or StepTimer()
    trainer.add_callback(timer)
    trainer.remove_callback(PrinterCallback)  # the table is the output
    trainer.step_timer = timer
    return timer


def train_block(trainer) -> list[float]:
    """Run ``trainer.train()`` (``args.max_steps`` steps from the start of the data); this block's step times."""
    timer = trainer.step_timer
    start = len(timer.times)
    trainer.train()
    return timer.times[start:]


def batch_stats(trainer, steps: int, rows: Callable | None = None) -> list[dict]:
    """The first ``steps`` batches of the trainer's own data loader (what ``train()`` will train on): per
    step the number of sequences, non-padding tokens, padded positions and the token sequences.
    ``rows(batch) -> (sequences, padded positions)`` reads collators without input_ids/attention_mask."""
    out = []
    loader = iter(trainer.get_train_dataloader())
    for _ in range(steps):
        batch = next(loader)
        if rows is None:
            mask = batch["attention_mask"]
            seqs = [row[m.bool()].tolist() for row, m in zip(batch["input_ids"], mask)]
            padded = mask.numel()
        else:
            seqs, padded = rows(batch)
        out.append({"sequences": len(seqs), "tokens": sum(map(len, seqs)), "padded": padded, "ids": seqs})
    return out


def state_mib(trainer) -> dict:
    """Parameters held (the policy, and a reference model if the trainer has one) and optimizer state."""
    mib = 1024**2

    def size(module) -> float:
        params = {id(p): p for p in module.parameters()}.values()  # tied weights once
        return sum(p.numel() * p.element_size() for p in params) / mib

    ref = getattr(trainer, "ref_model", None)
    optim = trainer.optimizer
    states = optim.state.values() if optim is not None else []
    opt = sum(t.numel() * t.element_size() for st in states for t in st.values() if torch.is_tensor(t))
    return {
        "policy_params_mib": size(trainer.model),
        "reference_params_mib": size(ref) if ref is not None else 0.0,
        "optimizer_state_mib": opt / mib,
    }


def arm_stats(blocks: list[list[float]], steps: list[dict]) -> dict:
    """Timing of one arm: ``blocks`` = step times of each timed block, ``steps`` = batch_stats of the
    block's batches (every block trains the same batches). Per round the block's mean step time."""
    times = [statistics.mean(block) for block in blocks]
    tokens = statistics.mean(step["tokens"] for step in steps)
    sequences = statistics.mean(step["sequences"] for step in steps)
    return {
        "time_s": summary(times),
        "step_times_raw": blocks,
        "sequences_per_step": sequences,
        "tokens_per_step": tokens,
        "padded_positions_per_step": statistics.mean(step["padded"] for step in steps),
        "tokens_per_s_raw": [tokens / t for t in times],  # per round, so a tokens/s ratio has a spread
        "tokens_per_s": tokens / statistics.median(times),
        "sequences_per_s": sequences / statistics.median(times),
    }


def memory_passes(arms: dict, trainers: dict, train_block: Callable) -> None:
    """One untimed block per arm under PeakMemory; adds ``peak_memory`` and ``state`` to ``arms[name]``."""
    for name in arms:
        with PeakMemory() as mem:
            train_block(name)
        arms[name]["peak_memory"] = mem.as_dict()
        arms[name]["state"] = state_mib(trainers[name])


def training_args(ns, output_dir: str, **extra) -> dict:
    """The TrainingArguments every arm of a comparison shares (TRL's configs change several defaults, so
    each is set explicitly): same batch, steps, optimizer, learning rate, seed and data order."""
    cuda = torch.cuda.is_available()
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": getattr(ns, "batch_size", None),
        "gradient_accumulation_steps": 1,
        "learning_rate": ns.learning_rate,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "max_steps": ns.steps,
        checkpointing_field(): False,  # TRL configs default to True
        # data in file order (the script shuffles it once with the seed): every arm sees the same batches
        "train_sampling_strategy": "sequential",
        "dataloader_num_workers": 0,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": ns.seed,
        "use_cpu": not cuda,
        "bf16": cuda,
        **extra,
    }


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    for name in ("transformers", "trl", "accelerate"):
        with contextlib.suppress(ImportError):
            info[name] = __import__(name).__version__
    with contextlib.suppress(ImportError):
        info["total_memory_gib"] = round(__import__("psutil").virtual_memory().total / 1024**3, 1)
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=ROOT
        )
        info["git_commit"] = head.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def parser(doc: str, name: str, *, repeats: int, steps: int | None = None) -> argparse.ArgumentParser:
    """The options every script takes; scripts add their own."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--repeats", type=int, default=repeats, help="measured rounds after the warm-up round")
    if steps is not None:
        p.add_argument("--steps", type=int, default=steps, help="optimizer steps per timed block")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny settings, 1 round")
    p.add_argument("--out", default=str(RESULTS / f"{name}.json"))
    return p


def add_training_options(p: argparse.ArgumentParser) -> None:
    """Options of the scripts that train (data size, batch, lengths, learning rate)."""
    p.add_argument("--batch-size", type=int, default=4, help="CPL/DPO/CPO: preference pairs per step")
    p.add_argument("--sequences", type=int, default=8, help="RM: sequences per step (records; 2 × BT pairs)")
    p.add_argument("--records", type=int, default=64, help="records read from each data file")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--learning-rate", type=float, default=1e-6)


def result_header(name: str, ns, model_path: str, load_start: list | None, wall_start: float) -> dict:
    """The first keys of every result file."""
    return {
        "benchmark": name,
        "model": ns.model,
        "model_path": model_path,
        "quick": ns.quick,
        "machine": {**machine_info(), "load_average_at_start": load_start},
        "bench_wall_s": time.perf_counter() - wall_start,
    }


def run_main(ns, quick: dict, run: Callable) -> dict:
    """Apply ``--quick`` and ``--threads``, run, and leave the caller's process as it was (the smoke tests
    run in pytest's)."""
    from transformers.utils import logging as hf_logging

    if ns.quick:
        for key, value in quick.items():
            setattr(ns, key, value)
    threads, verbosity = torch.get_num_threads(), hf_logging.get_verbosity()
    if ns.threads:
        torch.set_num_threads(ns.threads)
    hf_logging.set_verbosity_error()
    try:
        return run(ns)
    finally:
        torch.set_num_threads(threads)
        hf_logging.set_verbosity(verbosity)


def ratio_range(block: dict) -> dict:
    """A ratio_block's median and spread as {"median", "min", "max"}."""
    return {"median": block["ratio_median"], "min": block["ratio_min"], "max": block["ratio_max"]}


def target(pair: str, goal: str, metric: str, block: dict, met: bool) -> dict:
    """One row of the summary table (bench/summary.py); ``block`` is a ratio_block."""
    return {"pair": pair, "target": goal, "metric": metric, "ratio": ratio_range(block), "met": bool(met)}


def write_outputs(result: dict, out: str | Path, table: str) -> None:
    """``out`` (.json) and the table beside it (.md); the table is printed too."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print(table)


def fmt_mem(mem: dict) -> str:
    if mem.get("delta_mib") is None:
        return f"{mem['peak_mib']:.0f}"
    return f"{mem['peak_mib']:.0f} (+{mem['delta_mib']:.0f})"


def fmt_ratio(block: dict) -> str:
    """A ratio_block as "median (min–max)"."""
    return f"{block['ratio_median']:.3f} ({block['ratio_min']:.3f}–{block['ratio_max']:.3f})"


def fmt_range(ratio: dict) -> str:
    """A target's {"median", "min", "max"} as "median (min–max)"."""
    return f"{ratio['median']:.3f} ({ratio['min']:.3f}–{ratio['max']:.3f})"

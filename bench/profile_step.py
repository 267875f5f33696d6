"""Where a training step's time goes: phase breakdown and the torch profiler's top operators.

    python -m bench.profile_step cpl [dpo cpo principle_rm reward_trainer] [--threads 1] [--steps 2]

Builds each trainer exactly as bench/cpl_vs_trl.py and bench/rm_vs_trl.py do, runs a warm-up step, then
``--steps`` steps split into phases by callbacks and a wrapped ``compute_loss``:

- forward + loss: ``compute_loss`` (for DPO this includes the reference model's forward);
- backward + clip: the rest of the time up to ``on_pre_optimizer_step`` (backward, gradient clipping);
- optimizer: ``optimizer.step()`` (including posttrain's non-finite gradient check);
- rest: LR scheduler, zero_grad, callbacks.

and one more step under ``torch.profiler`` (CPU ops by self time). Writes bench/results/profile_<arm>.txt.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from bench import cpl_vs_trl, harness, rm_vs_trl

NAME = "profile_step"


class Phases(TrainerCallback):
    def __init__(self):
        self.rows: list[dict] = []
        self.forward = 0.0

    def _now(self):
        harness.sync()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.forward, self.t0 = 0.0, self._now()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.t1 = self._now()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.t2 = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        t3 = self._now()
        self.rows.append(
            {
                "forward + loss": self.forward,
                "backward + clip": self.t1 - self.t0 - self.forward,
                "optimizer": self.t2 - self.t1,
                "rest": t3 - self.t2,
                "step": t3 - self.t0,
            }
        )


def instrument(trainer) -> Phases:
    phases = Phases()
    trainer.add_callback(phases)
    compute_loss = trainer.compute_loss

    def timed(*args, **kwargs):
        start = phases._now()
        out = compute_loss(*args, **kwargs)
        phases.forward += phases._now() - start
        return out

    trainer.compute_loss = timed
    return phases


def build(arm: str, ns, model_path: str, out_dir: str):
    if arm in cpl_vs_trl.ARMS:
        rows = cpl_vs_trl.load_pairs(cpl_vs_trl.DATA, ns.records, ns.seed)
        return cpl_vs_trl.build(arm, ns, model_path, rows, out_dir)
    return rm_vs_trl.build(arm, ns, model_path, out_dir)


def profile(arm: str, ns, model_path: str, tmp: str) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    trainer = build(arm, ns, model_path, f"{tmp}/{arm}")
    phases = instrument(trainer)
    trainer.args.max_steps = 1
    trainer.train()  # warm-up
    phases.rows.clear()
    trainer.args.max_steps = ns.steps
    trainer.train()
    trainer.args.max_steps = 1
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        trainer.train()
    keys = list(phases.rows[0])
    lines = [
        f"# {arm}: {ns.steps} step(s) after a warm-up step, {torch.get_num_threads()} torch thread(s)",
        "",
        "phase            median s   share",
    ]
    medians = {k: statistics.median(r[k] for r in phases.rows) for k in keys}
    for key in keys:
        lines.append(f"{key:<16} {medians[key]:8.3f}   {100 * medians[key] / medians['step']:5.1f}%")
    lines += ["", prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=ns.rows)]
    return "\n".join(lines)


def run(ns) -> dict:
    from posttrain.models import resolve_model_path

    model_path = resolve_model_path(ns.model)
    out = {}
    with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
        for arm in ns.arms:
            harness.progress(NAME, arm)
            text = profile(arm, ns, model_path, tmp)
            path = Path(ns.out_dir) / f"profile_{arm}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
            print(text)
            out[arm] = text
    return out


def main(argv: list[str] | None = None) -> dict:
    p = harness.parser(__doc__, NAME, repeats=1, steps=2)
    choices = cpl_vs_trl.ARMS + rm_vs_trl.ARMS
    p.add_argument("arms", nargs="+", choices=choices)
    harness.add_training_options(p)
    p.add_argument("--rows", type=int, default=25, help="profiler table rows")
    p.add_argument("--out-dir", default=str(harness.RESULTS))
    quick = {"steps": 1, "records": 8, "batch_size": 2, "sequences": 4, "rows": 5}
    return harness.run_main(p.parse_args(argv), quick, run)


if __name__ == "__main__":
    main(sys.argv[1:])

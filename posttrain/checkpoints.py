"""Checkpoints a run can be killed around: atomic completion, automatic resume, a clean stop on SIGTERM.

Why: the HF Trainer writes ``checkpoint-N/`` piece by piece (model, optimizer, scheduler, RNG states, and
``trainer_state.json`` last), deletes older checkpoints beyond ``save_total_limit`` right after, and
``resume_from_checkpoint=True`` takes the highest-numbered folder whether it was finished or not. A kill
during a save could leave a half-written checkpoint that the next run resumes from, after the last good one
was rotated away.

Here (:class:`CheckpointMixin`, mixed into every posttrain trainer):

- a checkpoint counts only once every process has finished writing it and the main process has then written
  :data:`COMPLETE_MARKER` into it (write to a temporary name, then rename: the marker is there whole or not
  at all);
- older checkpoints are rotated only after that, so the last complete one survives a kill at any moment;
- :func:`resume_point` (called by ``posttrain train``) picks the newest complete checkpoint of the output
  directory, so rerunning the same command after SIGKILL or SIGTERM continues from it; leftovers of an
  unfinished save are removed first.

:class:`GracefulStop` turns SIGTERM (and SIGUSR1, which SLURM's ``--signal`` sends before a time limit) into
"save a checkpoint at the end of this step and stop": the processes agree on the step (one tiny all-reduce
per step when distributed), and ``posttrain train`` exits with code 1 without writing a final model, so a
scheduler requeues the job and the rerun resumes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

from posttrain import log
from posttrain.errors import UserError
from posttrain.model_card import ModelCardMixin

COMPLETE_MARKER = "posttrain_checkpoint_complete.json"
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


def is_complete(checkpoint: str | os.PathLike) -> bool:
    return (Path(checkpoint) / COMPLETE_MARKER).is_file()


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    complete = [p for _, p in _checkpoints(output_dir) if is_complete(p)]
    return complete[-1] if complete else None


def incomplete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    return [p for _, p in _checkpoints(output_dir) if not is_complete(p)]


def resume_point(output_dir: str | os.PathLike, requested: str | None, *, main_process: bool) -> str | None:
    """The checkpoint to resume from: ``requested`` when given (a path, which must be complete), else the
    newest complete checkpoint in ``output_dir`` (None: a fresh start). The main process removes unfinished
    checkpoints first, so a later save of the same step never mixes old and new files."""
    if requested:
        if not Path(requested).is_dir():
            raise UserError(f"training.resume_from_checkpoint: no such folder {requested}")
        if not is_complete(requested):
            raise UserError(
                f"training.resume_from_checkpoint: {requested} was not completely written "
                f"(no {COMPLETE_MARKER}); pick an earlier checkpoint"
            )
        return str(requested)
    if main_process:
        for partial in incomplete_checkpoints(output_dir):
            log.info(f"removing unfinished checkpoint {partial} (its save was interrupted)")
            shutil.rmtree(partial, ignore_errors=True)
    last = last_complete_checkpoint(output_dir)
    return str(last) if last is not None else None


def _rotate(output_dir: Path, keep: int | None, protect: str | None) -> None:
    """Keep the newest ``keep`` complete checkpoints (and ``protect``, the best one when tracked)."""
    if not keep:
        return
    complete = [p for _, p in _checkpoints(output_dir) if is_complete(p)]
    for old in complete[: max(len(complete) - keep, 0)]:
        if protect is not None and Path(protect).resolve() == old.resolve():
            continue
        shutil.rmtree(old, ignore_errors=True)


class StopAtMaxSteps:
    """Mixed into every posttrain trainer (through :class:`CheckpointMixin`): a resumed run stops exactly at
    ``max_steps``.

    The Trainer checks ``global_step >= max_steps`` only after a step, so a run resumed from a checkpoint
    that is already at the (possibly lowered) ``max_steps`` trained one more step before stopping. Here
    an epoch that would start at or past ``max_steps`` runs no step; a checkpoint beyond ``max_steps``
    cannot be turned into a run of ``max_steps`` and is refused.
    """

    def _init_training_state(self, *args, **kwargs):
        trained = super()._init_training_state(*args, **kwargs)
        if self.state.global_step > self.state.max_steps:
            raise UserError(
                f"this run is {self.state.max_steps} steps long (training.max_steps or num_train_epochs), but "
                f"the checkpoint resumed from is at step {self.state.global_step}: resume from an earlier checkpoint "
                "(training.resume_from_checkpoint=.../checkpoint-N), raise max_steps, or set output_dir to a "
                "new folder to start over"
            )
        return trained

    def _run_epoch(self, *args, **kwargs):
        if self.state.global_step >= self.state.max_steps:
            self.control.should_training_stop = True  # resumed at max_steps: nothing left to train
            return None
        return super()._run_epoch(*args, **kwargs)


class CheckpointMixin(StopAtMaxSteps, ModelCardMixin):
    """Mixed into a ``transformers.Trainer`` subclass (before the Trainer in the bases): marks checkpoints
    complete once every process wrote its part, and rotates old ones only after that. (It also brings
    posttrain's model card, :class:`posttrain.model_card.ModelCardMixin`, to every trainer.)"""

    def _save_checkpoint(self, model, trial):
        keep = self.args.save_total_limit
        self.args.save_total_limit = None  # the Trainer would rotate before this checkpoint is marked
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = keep
        self.accelerator.wait_for_everyone()  # every rank's shards (DeepSpeed, FSDP) are on disk
        run_dir = Path(self._get_output_dir(trial=trial))
        folder = run_dir / f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            marker = {"step": self.state.global_step, "world_size": self.args.world_size, "time": time.time()}
            tmp = folder / (COMPLETE_MARKER + ".tmp")
            tmp.write_text(json.dumps(marker) + "\n")
            os.replace(tmp, folder / COMPLETE_MARKER)
            _rotate(run_dir, keep, self.state.best_model_checkpoint)
        self.accelerator.wait_for_everyone()


class GracefulStop(TrainerCallback):
    """On SIGTERM/SIGUSR1: save a checkpoint after the current step and stop training (see the module
    docstring). ``every``: stop only on steps that are a multiple of it (a trainer whose state between
    those steps is not in a checkpoint, e.g. DRPO's buffered rollouts, sets it)."""

    def __init__(self, every: int = 1):
        self.every = max(int(every), 1)
        self.requested = False
        self.stopped_at: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if not self.requested:
            name = signal.Signals(signum).name
            log.warning(f"{name}: saving a checkpoint after this step, then stopping")
        self.requested = True

    def on_train_begin(self, args, state, control, **kwargs):
        import threading

        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)

    def on_train_end(self, args, state, control, **kwargs):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _agreed(self) -> bool:
        """Whether any process was signalled: all of them must stop on the same step (they save together)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self.requested
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 and self._agreed():
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

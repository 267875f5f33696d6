"""``python -m posttrain.experiments STUDY [options]``: run a study (every arm × seed not finished yet), then
write its summary and plot. See docs/experiments.md."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

DEFAULT_SEEDS = {"drpo-length": 3, "cpl-hh": 2}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m posttrain.experiments", description=__doc__)
    p.add_argument("study", choices=sorted(DEFAULT_SEEDS), help="which study")
    p.add_argument(
        "--scale",
        default="cpu",
        choices=["micro", "cpu", "gpu"],
        help="micro: smoke test; cpu: ≤ 90 min on 2 cores; gpu: one GPU (default cpu)",
    )
    p.add_argument("--seeds", type=int, help="seeds 1..N per arm (default: 3 for drpo-length, 2 for cpl-hh)")
    p.add_argument("--arms", help="comma-separated subset of the arms (default: all)")
    p.add_argument("--out", help="study folder (default outputs/experiments/<study>-<scale>)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    p.add_argument(
        "--keep-models",
        action="store_true",
        help="keep each run's trained weights (default: deleted after its evaluation)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one value of the study's configuration (dotted key, YAML value), e.g. "
        "training.max_steps=16, drpo.use_vllm=true, eval.limit=48, learning_rate=5e-6; repeatable",
    )
    g = p.add_argument_group("drpo-length")
    g.add_argument("--suffix", help="prompt suffix for training and evaluation (default: the study's TASK)")
    g.add_argument("--system-prompt", help="system message for the evaluation")
    g.add_argument("--train", help="training problems ({problem, answer} .jsonl/.json)")
    g.add_argument("--heldout", help="held-out problems")
    g = p.add_argument_group("cpl-hh")
    g.add_argument(
        "--hh", help="HH-RLHF .jsonl(.gz) (default ../shared/datasets/hh-rlhf/harmless-base-test.jsonl.gz)"
    )
    return p


def build(ns):
    from posttrain.errors import UserError
    from posttrain.experiments.studies import study_module

    mod = study_module(ns.study)
    arms = None
    if ns.arms:
        arms = [a.strip() for a in ns.arms.split(",") if a.strip()]
        unknown = [a for a in arms if a not in mod.ARMS]
        if unknown:
            raise UserError(f"--arms: unknown arm(s) {', '.join(unknown)} (the arms: {', '.join(mod.ARMS)})")
    if ns.study == "drpo-length":
        task = {
            k: v
            for k, v in (
                ("prompt_suffix", ns.suffix),
                ("system_prompt", ns.system_prompt),
                ("train", ns.train),
                ("heldout", ns.heldout),
            )
            if v is not None
        }
        st = mod.study(ns.scale, arms=arms, task=task)
    else:
        st = mod.study(ns.scale, arms=arms, hh=ns.hh)
    if ns.keep_models:
        st.config["keep_models"] = True
    for item in ns.set:
        apply_setting(st.config, item)
    return mod, st


def apply_setting(config: dict, item: str) -> None:
    """``a.b=value``: set an existing key of the configuration (a new key under a method or trainer section is
    allowed: drpo.*, training.*, methods.<arm>.*); the value is parsed as YAML, except where the current value
    is text."""
    import yaml

    from posttrain.errors import UserError

    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserError(f"--set {item!r}: expected KEY=VALUE")
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise UserError(
                f"--set {key}: no section {'.'.join(parts[: i + 1])!r} (sections: "
                f"{', '.join(k for k, v in node.items() if isinstance(v, dict))})"
            )
        node = node[part]
    open_sections = len(parts) > 1 and parts[0] in ("drpo", "training", "methods")
    if parts[-1] not in node and not open_sections:
        raise UserError(f"--set {key}: unknown key (keys here: {', '.join(node)})")
    current = node.get(parts[-1])
    value = raw if isinstance(current, str) else yaml.safe_load(raw)
    if isinstance(value, (dict, list)) and not isinstance(current, (dict, list)):
        value = raw  # text such as "Answer: \\boxed{}" is text, not a YAML mapping
    node[parts[-1]] = value


def main(argv: list[str] | None = None) -> int:
    from posttrain import log
    from posttrain.errors import UserError
    from posttrain.experiments import project_root
    from posttrain.experiments.runner import run_study

    ns = parser().parse_args(argv)
    seeds = ns.seeds if ns.seeds is not None else DEFAULT_SEEDS[ns.study]
    try:
        if seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {seeds}")
        mod, st = build(ns)
        mod.check_inputs(st)
        out = (
            Path(ns.out) if ns.out else project_root() / "outputs" / "experiments" / f"{ns.study}-{ns.scale}"
        )
        command = " ".join(
            ["python -m posttrain.experiments", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]
        )
        summary = run_study(st, out, list(range(1, seeds + 1)), dry_run=ns.dry_run, command=command)
    except UserError as exc:
        log.error(str(exc))
        return 2
    if ns.dry_run:
        return 0
    log.emit((out / "summary.md").read_text())
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

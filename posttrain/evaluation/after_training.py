"""Evaluations a recipe runs on its saved model once training ends (the recipe's ``evaluate:`` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain import log
from posttrain.data.sources import read_local
from posttrain.errors import UserError
from posttrain.evaluation.principles import evaluate_principles, format_principles, write_results
from posttrain.rewards.math import DRPO_SUFFIX
from posttrain.rewards.principle import PrincipleRewardModel


def run_after_training(section, out_dir: Path) -> dict[str, Any]:
    """Run each configured evaluation on the model in ``out_dir``; a missing benchmark is skipped, not fatal."""
    results: dict[str, Any] = {}
    if section.principles is not None or section.rm_bench is not None:
        rm = PrincipleRewardModel.from_pretrained(str(out_dir))
    if section.principles is not None:
        records = read_local(section.principles.data)[: section.principles.limit]
        evaluated = evaluate_principles(rm, records, source=section.principles.data)
        write_results(evaluated, out_dir / "eval")
        results["principles"] = {k: v for k, v in evaluated.items() if k != "scored"}
        log.info(f"held-out principle accuracy: {format_principles(results['principles'])}")
    if section.rm_bench is not None:
        # here, not at the top: math_eval's table function has the same name
        from posttrain.evaluation.rm_bench import evaluate_rm_bench, format_table

        cfg = section.rm_bench
        try:
            results["rm_bench"] = evaluate_rm_bench(
                rm.rm_bench_scorer(),
                data=cfg.data,
                limit=cfg.limit,
                principles=cfg.principle,
                out_dir=out_dir / "eval" / "rm_bench",
            )
            log.emit(format_table(results["rm_bench"]))
        except (UserError, OSError, ValueError) as exc:  # e.g. no ../shared copy and no hub access
            results["rm_bench"] = {"skipped": str(exc)}
            log.info(f"RM-Bench skipped: {exc}")
    if section.math is not None:
        results["math"] = _math(section.math, out_dir)
    return results


def _math(cfg, out_dir: Path) -> dict[str, Any]:
    from posttrain.evaluation.math_eval import MathEvalSettings, evaluate_math, format_table

    settings = MathEvalSettings(
        samples=cfg.samples,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        limit=cfg.limit,
        suffix=DRPO_SUFFIX if cfg.suffix is None else cfg.suffix,
    )
    try:
        results = evaluate_math(
            str(out_dir),
            cfg.benchmarks,
            settings=settings,
            data_dir=cfg.data_dir,
            out_dir=out_dir / "eval" / "math",
        )
    except (UserError, OSError) as exc:  # e.g. a named benchmark without a local copy
        log.info(f"math evaluation skipped: {exc}")
        return {"skipped": str(exc)}
    log.emit(format_table(results))
    return results

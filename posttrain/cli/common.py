"""What several commands share: the principle-RM and chat-backend flags, the checks made before anything
loads (numeric flag ranges, a chat model spec), and the ``run.json`` an evaluation's output folder keeps."""

from __future__ import annotations

import argparse
from pathlib import Path

from posttrain.errors import UserError

DTYPES = ["auto", "float32", "bfloat16", "float16"]


def add_rm_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="trained RM directory (or hub id / alias)")
    parser.add_argument(
        "--form", choices=["yes_no", "scalar_head", "bradley_terry"], help="default: as saved, else inferred"
    )
    parser.add_argument("--dtype", default="auto", choices=DTYPES)


def load_rm(ns: argparse.Namespace, model: str | None = None):
    """The RM of ``--model`` (or ``model``, e.g. a baseline: then its form is read from its folder)."""
    from posttrain.rewards.principle import PrincipleRewardModel

    if model is not None:
        return PrincipleRewardModel.from_pretrained(model, dtype=ns.dtype, field="--baseline")
    return PrincipleRewardModel.from_pretrained(ns.model, form=ns.form, dtype=ns.dtype, field="--model")


def add_chat_backend_args(parser: argparse.ArgumentParser) -> None:
    """Flags of posttrain.chat_backends.build_chat_backend shared by every command that chats with a model."""
    parser.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the endpoint's API key (default OPENAI_API_KEY)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight (default 8)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (default 120)")
    parser.add_argument("--max-retries", type=int, default=5, help="HTTP retries with backoff (default 5)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES)
    parser.add_argument(
        "--batch-size", type=int, default=8, help="sequences per generate call (local models)"
    )


def chat_backend_options(ns: argparse.Namespace) -> dict:
    keys = ("api_key_env", "concurrency", "timeout", "max_retries", "dtype", "batch_size")
    return {key: getattr(ns, key) for key in keys}


def check_chat_spec(spec: str, backend: str | None, api_model: str | None, flag: str, api_flag: str) -> None:
    """What :func:`posttrain.chat_backends.build_chat_backend` would refuse, checked before any output is
    written: an HTTP endpoint needs ``api_flag`` and the openai backend; a local model must be loadable."""
    from posttrain.models import check_model_source

    if spec.startswith(("http://", "https://")):
        if backend not in (None, "openai"):
            raise UserError(
                f"{flag} {spec}: an HTTP endpoint is served by the 'openai' backend, not '{backend}'"
            )
        if not api_model:
            raise UserError(f"{flag} {spec}: an HTTP endpoint needs the served model's name ({api_flag})")
        return
    if backend == "openai":
        raise UserError(f"{flag} '{spec}': the openai backend needs an http:// or https:// endpoint URL")
    check_model_source(spec, field=flag, hub=False)  # a hub id is looked up when it loads


# numeric flags shared by several commands: (flag, lowest allowed, whether the lowest itself is allowed,
# highest); the settings classes of each evaluator check their own flags again (and the rest)
FLAG_RANGES = {
    "limit": ("--limit", 1, True, None),
    "samples": ("--samples", 1, True, None),
    "max_new_tokens": ("--max-new-tokens", 1, True, None),
    "judge_max_new_tokens": ("--judge-max-new-tokens", 1, True, None),
    "batch_size": ("--batch-size", 1, True, None),
    "concurrency": ("--concurrency", 1, True, None),
    "max_retries": ("--max-retries", 0, True, None),
    "timeout": ("--timeout", 0, False, None),
}


def check_flag_values(ns: argparse.Namespace) -> None:
    """Numbers out of range are refused before anything loads or is written (a negative --limit used to
    slice records from the end; --concurrency 0 was found after run.json was written)."""
    import math

    for attr, (flag, low, inclusive, high) in FLAG_RANGES.items():
        value = getattr(ns, attr, None)
        if value is None:
            continue
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            bound = f"at least {low}" if inclusive else f"above {low}"
            raise UserError(f"{flag} must be {bound}, got {value:g}")
        if high is not None and value > high:
            raise UserError(f"{flag} must be at most {high}, got {value:g}")


def write_run_file(out: str | Path, run: dict) -> None:
    """``run.json``: the settings of the run whose results are in ``out`` (a rerun with others is refused)."""
    import json

    from posttrain.jsonl import RUN_FILE, write_atomic

    write_atomic(Path(out) / RUN_FILE, json.dumps(run, indent=2) + "\n")

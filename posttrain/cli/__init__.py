"""Command line: ``posttrain train|validate|recipes|score|eval|principles|vllm-serve``.

Also runs as ``python -m posttrain`` and under ``accelerate launch [--config_file launch/X.yaml] -m posttrain``.
Each command is a module of :mod:`posttrain.cli.commands` (flags shared by several are in
:mod:`posttrain.cli.common`); this module builds the parser from them and runs the chosen one.

User mistakes (:class:`~posttrain.errors.UserError`) print one ``error:`` line and exit with code 2; a run
that stopped short (:class:`~posttrain.errors.IncompleteRun`) prints one and exits with 1; Ctrl-C exits with
130. A command's output goes through :func:`posttrain.log.emit`, progress and errors through
:mod:`posttrain.log` (see there for which stream and which process prints what).
"""

from __future__ import annotations

import argparse
import sys

from posttrain import log
from posttrain.cli.commands import COMMANDS
from posttrain.cli.common import check_flag_values
from posttrain.errors import IncompleteRun, MaskingStream, UserError, mask_secrets, secret_values

__all__ = ["EXIT_USAGE", "build_parser", "main"]

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posttrain", description="LLM post-training: CPL, DRPO, RLBFF.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    # API keys never reach the terminal, even when a server echoes the Authorization header back
    secrets = secret_values(getattr(ns, "api_key_env", None))
    stderr = sys.stderr
    if secrets:
        sys.stderr = MaskingStream(stderr, secrets)
    try:
        check_flag_values(ns)
        return ns.func(ns)
    except UserError as exc:
        # One line, as promised: pydantic (several errors) and TrainingArguments messages span lines.
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        log.error(mask_secrets(message, secrets))
        return EXIT_USAGE
    except IncompleteRun as exc:
        log.error(mask_secrets(str(exc), secrets))
        return 1
    except KeyboardInterrupt:
        log.emit("interrupted", err=True)
        return 130
    finally:
        sys.stderr = stderr

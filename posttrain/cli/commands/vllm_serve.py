"""``posttrain vllm-serve MODEL``: TRL's vLLM server for a model name posttrain understands.

The command line and environment are :func:`posttrain.vllm_serve.build_command`'s (see that module for what
it changes from ``trl vllm-serve``); here: the flags, the vLLM install check, and the exec."""

from __future__ import annotations

import argparse
import os
import sys

from posttrain import log
from posttrain.cli.common import DTYPES
from posttrain.vllm_support import CPU_KV_CACHE_GB


def register(sub) -> None:
    serve = sub.add_parser(
        "vllm-serve",
        help="serve a model with vLLM for vllm_mode: server or OpenAI-compatible clients (TRL's server)",
    )
    serve.add_argument("model", help="model directory, hub id, .gguf file or alias (embedded:...)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--dtype", default="auto", choices=DTYPES)
    serve.add_argument("--max-model-len", type=int, default=None, help="longest prompt + response, tokens")
    serve.add_argument(
        "--gpu-memory-utilization", type=float, default=0.9, help="GPU: fraction of GPU memory for vLLM"
    )
    serve.add_argument(
        "--kv-cache-gb",
        type=int,
        default=None,
        help=f"CPU: GiB of KV cache (VLLM_CPU_KVCACHE_SPACE; default {CPU_KV_CACHE_GB})",
    )
    serve.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    serve.add_argument(
        "--vllm-args", default="", help="more `vllm serve` arguments, one string, e.g. '--enforce-eager'"
    )
    serve.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    import shlex

    import torch

    from posttrain.vllm_serve import build_command
    from posttrain.vllm_support import check_vllm

    check_vllm("vllm-serve")
    command, env = build_command(ns, cuda=torch.cuda.is_available())
    shown = " ".join(f"{k}={v}" for k, v in env.items()) + " " + shlex.join(command)
    if ns.dry_run:
        log.emit(shown)
        return 0
    log.info(shown)
    sys.stdout.flush()
    os.execve(command[0], command, {**os.environ, **env})
    return 0  # not reached

"""``posttrain vllm-serve``: TRL's vLLM server for a model name posttrain understands.

It runs the command ``trl vllm-serve`` builds (``trl.scripts.vllm_serve.build_command``: vLLM's OpenAI-
compatible server plus the endpoints TRL's ``VLLMClient`` uses), after resolving posttrain's model names
(``embedded:...`` aliases, ``.gguf`` files) to a folder vLLM can load and checking the vLLM install. It
listens on 127.0.0.1 unless ``--host`` says otherwise (TRL's default, 0.0.0.0, exposes it to the network).

On a CPU: the KV cache is ``--kv-cache-gb`` GiB (``VLLM_CPU_KVCACHE_SPACE``), and the server is started
without TRL's NCCL weight-transfer engine, which needs CUDA: the server generates (``VLLMClient.generate``,
``/v1/chat/completions`` for ``eval mt-bench --judge URL`` or ``principles extract --model URL``), but a
trainer cannot push weights into it (``drpo.vllm_mode: server`` is refused on a CPU before training).
"""

from __future__ import annotations

import argparse
import os
import sys

from posttrain.errors import UserError
from posttrain.vllm_support import CPU_KV_CACHE_GB


def add_parser(sub) -> None:
    serve = sub.add_parser(
        "vllm-serve",
        help="serve a model with vLLM for vllm_mode: server or OpenAI-compatible clients (TRL's server)",
    )
    serve.add_argument("model", help="model directory, hub id, .gguf file or alias (embedded:...)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
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


def build_command(ns: argparse.Namespace, *, cuda: bool) -> tuple[list[str], dict[str, str]]:
    """The server's command line and environment (no side effects)."""
    from posttrain.models import resolve_model_path
    from posttrain.trainers.trl_surface import vllm_serve_script

    ScriptArguments, trl_command = vllm_serve_script()

    if not 0 < ns.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {ns.port}")
    if ns.kv_cache_gb is not None and ns.kv_cache_gb < 1:
        raise UserError(f"--kv-cache-gb must be at least 1, got {ns.kv_cache_gb}")
    if not 0 < ns.gpu_memory_utilization <= 1:
        raise UserError(f"--gpu-memory-utilization must be in (0, 1], got {ns.gpu_memory_utilization}")
    path = resolve_model_path(ns.model)
    if not os.path.isdir(path) and os.path.exists(path):
        raise UserError(f"{ns.model}: vLLM serves a model folder or hub id, not a single file")
    args = ScriptArguments(
        model=path,
        host=ns.host,
        port=ns.port,
        dtype=ns.dtype,
        max_model_len=ns.max_model_len,
        gpu_memory_utilization=ns.gpu_memory_utilization,
    )
    import shlex

    command = trl_command(args, shlex.split(ns.vllm_args))
    # vLLM's CLI entry point, through a shim that also works under the vllm-cpu distribution
    command[command.index("vllm.entrypoints.cli.main")] = "posttrain._vllm_cli"
    env = {"VLLM_SERVER_DEV_MODE": "1"}  # TRL's weight-transfer and prefix-cache endpoints
    if not cuda:
        # TRL's client pushes weights over NCCL; vLLM's CPU build cannot set that engine up
        at = command.index("--weight-transfer-config")
        del command[at : at + 2]
        env["VLLM_CPU_KVCACHE_SPACE"] = str(ns.kv_cache_gb or CPU_KV_CACHE_GB)
    return command, env


def run(ns: argparse.Namespace) -> int:
    import shlex

    import torch

    from posttrain.vllm_support import check_vllm

    check_vllm("vllm-serve")
    command, env = build_command(ns, cuda=torch.cuda.is_available())
    shown = " ".join(f"{k}={v}" for k, v in env.items()) + " " + shlex.join(command)
    if ns.dry_run:
        print(shown)
        return 0
    print(f"[posttrain] {shown}", flush=True)
    sys.stdout.flush()
    os.execve(command[0], command, {**os.environ, **env})
    return 0  # not reached

"""``posttrain vllm-serve``'s command: TRL's vLLM server for a model name posttrain understands.

It runs the command ``trl vllm-serve`` builds (``trl.scripts.vllm_serve.build_command``: vLLM's OpenAI-
compatible server plus the endpoints TRL's ``VLLMClient`` uses), after resolving posttrain's model names
(``embedded:...`` aliases, ``.gguf`` files) to a folder vLLM can load; the command itself
(:mod:`posttrain.cli.commands.vllm_serve`) checks the vLLM install and replaces its process by it. It
listens on 127.0.0.1 unless ``--host`` says otherwise (TRL's default, 0.0.0.0, exposes it to the network).

On a CPU: the KV cache is ``--kv-cache-gb`` GiB (``VLLM_CPU_KVCACHE_SPACE``), and the server is started
without TRL's NCCL weight-transfer engine, which needs CUDA: the server generates (``VLLMClient.generate``,
``/v1/chat/completions`` for ``eval mt-bench --judge URL`` or ``principles extract --model URL``), but a
trainer cannot push weights into it (``drpo.vllm_mode: server`` is refused on a CPU before training).
"""

from __future__ import annotations

import argparse
import os

from posttrain.errors import UserError
from posttrain.vllm_support import CPU_KV_CACHE_GB


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

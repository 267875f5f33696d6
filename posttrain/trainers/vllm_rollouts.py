"""vLLM rollouts for the RL trainers: install checks, the CPU weight sync, and the CPU memory knobs.

Generation itself is TRL's (``trl.generation.vllm_generation.VLLMGeneration``, colocate or server mode);
posttrain changes only what does not work on a CPU and checks, before a model loads, what would otherwise
fail deep inside vLLM:

- :func:`posttrain.vllm_support.check_vllm` — vLLM missing, or a vLLM / transformers / TRL combination the
  installed vLLM does not accept, is one ``UserError`` naming the versions and the install command.
- :class:`LayerwiseReloadVLLMGeneration` — TRL's colocate sync calls the engine model's ``load_weights``
  one tensor at a time. vLLM's CPU backend pre-packs every linear weight for its GEMM kernel and replaces
  the parameter by an empty one (``dispatch_cpu_unquantized_gemm(..., remove_weight=True)``), so that call
  fails (``'Parameter' object has no attribute 'weight_loader'``). The sync here streams the same tensors
  through vLLM's own in-place reload (``model_runner.reload_weights``: restore the checkpoint-format layer,
  load, re-run the kernel's weight processing), so the engine's packed weights are rebuilt from the trained
  ones. GPUs keep TRL's sync unchanged.
- :func:`apply_cpu_memory_settings` — on the CPU backend the KV cache is sized by
  ``VLLM_CPU_KVCACHE_SPACE`` (GiB) or else by ``vllm_gpu_memory_utilization`` read as a fraction of the
  machine's memory; sleep mode needs a GPU allocator and is refused with one line.

Server mode (``vllm_mode: server``): TRL's weight transfer to a ``trl vllm-serve`` server is vLLM's NCCL
engine, which needs CUDA on both sides (``VLLMClient.init_communicator`` raises for a CPU device). On a
CPU, :func:`check_server_mode` turns that into one line before training starts; generation-only use of a
server (``posttrain vllm-serve`` + an OpenAI-compatible client) works on a CPU.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from posttrain.errors import UserError
from posttrain.vllm_support import check_model, check_vllm

if TYPE_CHECKING:
    from posttrain.trainers.drpo_config import DRPOConfig


def on_cpu(args) -> bool:
    """Whether this run's processes are on the CPU (no accelerator visible or ``use_cpu``)."""
    import torch

    return bool(getattr(args, "use_cpu", False)) or not torch.cuda.is_available()


def apply_cpu_memory_settings(args: DRPOConfig) -> None:
    """Map the memory knobs onto vLLM's CPU backend (see the module docstring); call before the engine."""
    if args.vllm_enable_sleep_mode:
        raise UserError(
            "drpo.vllm_enable_sleep_mode: vLLM's sleep mode needs a GPU memory allocator; on a CPU leave it "
            "false and size the KV cache with drpo.vllm_cpu_kv_cache_gb"
        )
    if args.vllm_cpu_kv_cache_gb is not None:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(args.vllm_cpu_kv_cache_gb)


def check_server_mode(args: DRPOConfig) -> None:
    """Server mode on a CPU trainer would fail at TRL's NCCL weight transfer: say so before any model loads."""
    if args.vllm_mode == "server" and on_cpu(args):
        raise UserError(
            "drpo.vllm_mode: server mode syncs weights over vLLM's NCCL engine, which needs CUDA on the trainer "
            "and the server (trl's VLLMClient.init_communicator); on a CPU use vllm_mode: colocate"
        )


def prepare(args: DRPOConfig, model_path: str | None = None) -> None:
    """Everything about this machine that would make the run fail inside vLLM, checked before any model
    loads (not in the config itself: a GPU recipe validates on a laptop): vLLM installed in a supported
    combination, server mode and sleep mode where they can work, the CPU KV cache, the model's architecture."""
    if not args.use_vllm:
        return
    check_vllm("drpo.use_vllm")
    check_server_mode(args)
    if on_cpu(args):
        apply_cpu_memory_settings(args)
    if model_path is not None:
        check_model(model_path, "model.name_or_path")


def vllm_generation_class():
    """TRL's VLLMGeneration with the CPU-safe colocate weight sync (built lazily: vLLM is optional)."""
    from posttrain.trainers.trl_surface import vllm_generation_class as trl_class

    class LayerwiseReloadVLLMGeneration(trl_class()):
        """TRL's vLLM generation; on a CPU the colocate sync goes through vLLM's layer-wise reload."""

        def sync_weights(self):
            if self.mode != "colocate" or self.accelerator.device.type != "cpu":
                return super().sync_weights()
            runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
            # one pass over TRL's own iterator (names fixed for vLLM, DeepSpeed/PEFT gathered and merged);
            # every process runs it, since gathering a ZeRO-3 parameter is collective
            runner.reload_weights(weights_iterator=self._iter_named_params(), is_checkpoint_format=True)
            self.llm.reset_prefix_cache()

    return LayerwiseReloadVLLMGeneration

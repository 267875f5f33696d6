"""One run of a study, in its own process: ``python -m posttrain.experiments.worker RUN_DIR/spec.json``.

Runs the study's ``run_one(spec)`` and writes what it returns to ``RUN_DIR/worker_result.json``; the runner
turns that into ``result.json``. A process per run keeps memory from one run out of the next.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main(argv: list[str] | None = None) -> int:
    from posttrain.experiments.runner import write_json_atomic
    from posttrain.experiments.studies import study_module

    argv = sys.argv[1:] if argv is None else argv
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    result = study_module(spec["study"]).run_one(spec)
    write_json_atomic(spec_path.parent / "worker_result.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

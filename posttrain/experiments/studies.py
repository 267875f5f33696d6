"""The studies by name."""

from __future__ import annotations

import importlib
from types import ModuleType

STUDIES = {"drpo-length": "posttrain.experiments.drpo_length", "cpl-hh": "posttrain.experiments.cpl_hh"}


def study_module(name: str) -> ModuleType:
    return importlib.import_module(STUDIES[name])

"""Where things live: the project root (bundled recipes and demo data) and the user cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The source checkout (editable install) holds recipes/, data/ and launch/ beside the package.
PROJECT_ROOT = PACKAGE_DIR.parent


def recipes_dir() -> Path:
    return Path(os.environ.get("POSTTRAIN_RECIPES", PROJECT_ROOT / "recipes"))


def cache_dir() -> Path:
    """User cache for converted models: ``$POSTTRAIN_CACHE`` or ``$XDG_CACHE_HOME/posttrain``."""
    if "POSTTRAIN_CACHE" in os.environ:
        return Path(os.environ["POSTTRAIN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "posttrain"


def find_file(path: str | os.PathLike) -> Path | None:
    """Resolve a user path: as given (relative to the current directory), else relative to the project root.

    The fallback lets bundled recipes name bundled data (``data/demo/...``) from any working directory.
    """
    p = Path(path).expanduser()
    if p.exists():
        return p
    if not p.is_absolute() and (PROJECT_ROOT / p).exists():
        return PROJECT_ROOT / p
    return None


def safe_id(name: str) -> str:
    """``name`` made safe as a file name (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def model_id_for(spec: str) -> str:
    """A file-safe id from a model spec: the last path component (``embedded:`` dropped)."""
    return safe_id(spec.removeprefix("embedded:").rstrip("/").split("/")[-1])

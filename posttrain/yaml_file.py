"""Reading a YAML mapping (a recipe) with one-line :class:`UserError` messages for every way it can fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from posttrain.errors import UserError


def _non_string_key(node: Any, where: str = "") -> str | None:
    """The dotted place of the first mapping key that is not a string (``123: x``), or None."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                return f"{where}.{key!r}" if where else repr(key)
            found = _non_string_key(value, f"{where}.{key}" if where else key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _non_string_key(value, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (a recipe is UTF-8 YAML)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping (key: value), got {type(data).__name__}")
    bad = _non_string_key(data)
    if bad is not None:
        raise UserError(f"{path}: key {bad} is not a string (recipe keys are names such as max_steps)")
    return data

"""The test layers hold: every fixture helpers.py names as training exists (a renamed fixture would otherwise
let the tests that use it fall back into the fast unit layer unnoticed)."""

from __future__ import annotations

import ast

from helpers import ROOT, TRAINING_FIXTURES


def _test_functions(path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_training_fixture_exists():
    defined = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined |= _test_functions(path)
    assert defined >= TRAINING_FIXTURES, TRAINING_FIXTURES - defined

"""The test layers hold: every test helpers.py lists as training exists (a renamed test would otherwise fall
back into the fast unit layer unnoticed)."""

from __future__ import annotations

import ast

from helpers import ROOT, TRAINING_FIXTURES, TRAINS


def _test_functions(path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_listed_training_test_exists():
    for key in sorted(TRAINS):
        file, function = key.split("::")
        path = ROOT / "tests" / file
        assert path.is_file(), key
        assert function in _test_functions(path), key


def test_every_training_fixture_exists():
    defined = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined |= _test_functions(path)
    assert defined >= TRAINING_FIXTURES, TRAINING_FIXTURES - defined

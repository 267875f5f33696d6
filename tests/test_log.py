"""posttrain.log: which stream each kind of line goes to, with which prefix, on which process."""

from __future__ import annotations

import logging

import pytest

from posttrain import log


def _all(capsys):
    log.info("progress")
    log.warning("careful")
    log.error("broken")
    log.emit("table")
    log.emit("to stderr", err=True)
    return capsys.readouterr()


def test_main_process_prints_everything_on_its_stream(monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    out = _all(capsys)
    assert out.out == "[posttrain] progress\ntable\n"
    assert out.err == "[posttrain] careful\nerror: broken\nto stderr\n"


@pytest.mark.parametrize("var", ["RANK", "LOCAL_RANK"])
def test_other_processes_print_only_errors(monkeypatch, capsys, var):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv(var, "1")
    out = _all(capsys)
    assert out.out == "" and out.err == "error: broken\n"


def test_rank_wins_over_local_rank(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert log.is_main_process()
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not log.is_main_process()


def test_progress_lines_can_be_silenced_but_not_the_output(monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    logger = logging.getLogger(log.LOGGER_NAME)
    previous = logger.level
    logger.setLevel(logging.WARNING)  # setLevel, not the attribute: it clears the logger's cache
    try:
        log.info("hidden")
        log.emit("shown")
    finally:
        logger.setLevel(previous)
    assert capsys.readouterr().out == "shown\n"


def test_log_is_a_leaf():
    """Every layer may use it: it imports nothing from posttrain."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(log.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.startswith("posttrain")]

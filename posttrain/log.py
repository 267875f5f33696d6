"""posttrain's console output: progress lines, warnings, errors and a command's own output, rank-aware.

Four calls, one stream each (the text is what users and tests read; the streams are as they always were):

- :func:`info` — progress of a run (``[posttrain] data ...``, ``resuming from ...``): stdout, prefixed
  ``[posttrain] ``, main process only.
- :func:`warning` — something the user should know that does not stop the run (a skipped update, a failed
  request being retried, a signal received): stderr, prefixed ``[posttrain] ``, main process only.
- :func:`error` — a failure the command reports before exiting non-zero: stderr, ``error: <message>``,
  every process (a worker's failure must not be silenced by the main process's success).
- :func:`emit` — the command's output itself (result tables, ``ok: ...``, the files it wrote): printed as
  given, stdout (``err=True``: stderr), main process only. It is not a log message, so logging settings do
  not hide it.

The main process is the one with ``RANK`` (else ``LOCAL_RANK``) 0 or unset: ``accelerate launch``, torchrun
and DeepSpeed's launcher set them before any accelerator exists, so the check costs an environment lookup.

``info`` / ``warning`` / ``error`` go through the stdlib logger ``posttrain.log`` (not propagated to the
root logger): ``logging.getLogger("posttrain.log").setLevel(logging.WARNING)`` silences the progress lines.
Its handler writes to ``sys.stdout`` / ``sys.stderr`` as they are when a line is written, so redirections
(the CLI's secret masking, pytest's capture) see every line.

This module is a leaf: it imports nothing from posttrain, so every layer may use it.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["LOGGER_NAME", "emit", "error", "info", "is_main_process", "warning"]

LOGGER_NAME = "posttrain.log"
PREFIX = "[posttrain] "


def is_main_process() -> bool:
    """Whether this is the first process of a launch (or the only one)."""
    rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
    try:
        return int(rank) == 0
    except ValueError:
        return True


class _ConsoleHandler(logging.Handler):
    """INFO to stdout, WARNING and above to stderr, looked up at each line; below ERROR only on the main
    process."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or is_main_process()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            head = "error: " if record.levelno >= logging.ERROR else PREFIX
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(head + record.getMessage() + "\n")
            stream.flush()
        except Exception:  # a closed or broken stream: as logging does, never raise from a log line
            self.handleError(record)


def _logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return logger


_LOG = _logger()


def info(message: str) -> None:
    """A progress line: ``[posttrain] message`` on stdout, main process only."""
    _LOG.info("%s", message)


def warning(message: str) -> None:
    """``[posttrain] message`` on stderr, main process only."""
    _LOG.warning("%s", message)


def error(message: str) -> None:
    """``error: message`` on stderr, every process."""
    _LOG.error("%s", message)


def emit(text: str = "", *, err: bool = False) -> None:
    """The command's output, printed as given (a newline added), main process only."""
    if not is_main_process():
        return
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{text}\n")
    stream.flush()

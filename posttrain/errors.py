"""User-facing errors.

A mistake in a recipe, a data file or on the command line raises :class:`UserError`. The CLI prints its
message on one line (``error: ...``) and exits with code 2, without a traceback and before anything is
written to the output directory.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable


class UserError(Exception):
    """A problem the user can fix (recipe, data, CLI). The message names the field, file or record."""


class ConfigFieldError(ValueError):
    """Raised by a method config's ``__post_init__`` for a bad value; names the field (the method registry
    turns it into a :class:`UserError` naming the recipe section)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class IncompleteRun(Exception):
    """Work stopped short for a reason outside the user's input (a remote endpoint kept failing, a signal,
    non-finite training); what finished is saved. The CLI prints the message and exits 1."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""`` when none is close."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


# environment variables whose values are secrets: never echoed (a server may echo the Authorization header)
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
MASK = "***"


def secret_values(*env_names: str | None) -> set[str]:
    """Values of the environment variables ``env_names`` and of every ``*KEY``/``*TOKEN``/``*SECRET``/
    ``*PASSWORD`` variable (at least 8 characters, so ordinary words are never masked)."""
    named = {n for n in env_names if n}
    return {
        value
        for name, value in os.environ.items()
        if (name in named or _SECRET_NAME.search(name)) and len(value) >= 8
    }


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``."""
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


class MaskingStream:
    """A text stream that masks secrets in everything written through it (the CLI wraps stderr in it, so
    a retry message or a progress bar that quotes a server's echo of the API key prints ``***``)."""

    def __init__(self, stream, secrets: Iterable[str]):
        self._stream, self._secrets = stream, sorted(set(secrets), key=len, reverse=True)

    def write(self, text: str) -> int:
        self._stream.write(mask_secrets(text, self._secrets))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

"""User-facing errors.

A mistake in a recipe, a data file or on the command line raises :class:`UserError`. The CLI prints its
message on one line (``error: ...``) and exits with code 2, without a traceback and before anything is
written to the output directory.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem the user can fix (recipe, data, CLI). The message names the field, file or record."""


class IncompleteRun(Exception):
    """Work stopped short for a reason outside the user's input (a remote endpoint kept failing, a signal,
    non-finite training); what finished is saved. The CLI prints the message and exits 1."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""`` when none is close."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""

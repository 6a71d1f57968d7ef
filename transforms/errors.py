"""The one base class of errors a user can hit: the CLI prints them as one line (no traceback) and exits 2 or 1."""

from __future__ import annotations


class TokenmillError(Exception):
    """An error in the user's input, options or output that the message explains (file, line or option, and what
    to do). Subclasses keep the built-in base they had (``ValueError``, ``OSError``...) beside this one."""

    exit_code: int = 2  # usage-like errors; a run that could not prove its result complete sets 1

"""Errors magicore reports to its users.

Every error a user can cause or meet (bad input, a model server that fails, code that cannot
run) is a `MagicoreError` whose message is one readable sentence; the CLI prints it on one line.
This module imports nothing from magicore.
"""

from __future__ import annotations


class MagicoreError(Exception):
    """Base class: the message says what happened in words a user understands."""


class InputError(MagicoreError, ValueError):
    """The user's input cannot be used (empty question, bad option, unknown model spec)."""


class ModelError(MagicoreError):
    """A model server failed: unreachable, timed out, HTTP error, or unusable output.

    `transient` says whether trying again may help (timeouts, refused connections, HTTP 5xx
    and 429); graph nodes retry only those. `status` is the server's HTTP status when it
    answered with one, and `retry_after` the seconds its Retry-After header asked for.
    """

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None,
                 retry_after: float | None = None):  # fmt: skip
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after


class SetupError(MagicoreError):
    """Something magicore needs is not installed; the message names the command that installs it."""

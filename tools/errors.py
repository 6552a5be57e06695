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


def retry_after_seconds(headers) -> float | None:
    """The wait a response's headers ask for: `retry-after-ms` (OpenAI's), or `retry-after` in
    seconds or as an HTTP date; None when they ask for none (or for something unreadable)."""
    import email.utils
    import math
    import time

    def get(name: str):
        value = headers.get(name) if headers is not None else None
        return value.strip() if isinstance(value, str) else value

    candidates = []
    if (ms := get("retry-after-ms")) is not None:
        candidates.append(lambda: float(ms) / 1000)
    if (value := get("retry-after")) is not None:
        candidates.append(lambda: float(value))
        candidates.append(lambda: email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    for read in candidates:
        try:
            seconds = read()
        except (TypeError, ValueError, OverflowError):
            continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


class SetupError(MagicoreError):
    """Something magicore needs is not installed; the message names the command that installs it."""

"""Tracing for the UI: turn OpenTelemetry on once per server process, leave single runs
untraced, and link a trace id to a trace viewer.

Calls into magicore.graphs.tracing: `setup_tracing(exporter)` with "console", "otlp" or
"jsonl:PATH". OpenTelemetry's provider is process-wide and cannot be removed once set, so
"tracing off" for a run means running it under an unsampled parent span: with the SDK's
default parent-based sampler nothing inside is recorded and the run has no trace id.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

#: e.g. http://localhost:6006/redirects/traces/{trace_id}: Phoenix's route that finds the trace's
#: project itself (its /projects/... pages take the project's internal id, not its name).
URL_ENV = "MAGICORE_TRACE_URL"

try:
    from magicore.graphs.tracing import setup_tracing
except ImportError:  # a build without tracing: the toggle is shown disabled
    setup_tracing = None

_installed: str | None = None  # the exporter this process traces to


def available() -> bool:
    return setup_tracing is not None


def installed() -> str | None:
    return _installed


def enable(exporter: str) -> str:
    """Install tracing to `exporter` (once per process); returns the exporter in effect.

    Raises magicore's InputError for an unknown exporter.
    """
    global _installed
    if setup_tracing is None:
        raise RuntimeError("this magicore has no tracing module")
    if _installed is None:
        provider = setup_tracing(exporter.strip())
        _installed = exporter.strip() if provider is not None else None
    return _installed or ""


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Record no spans inside the block, whatever provider is installed."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = SpanContext(trace_id=random.getrandbits(128) or 1, span_id=random.getrandbits(64) or 1,
                         is_remote=False, trace_flags=TraceFlags(TraceFlags.DEFAULT))  # fmt: skip
    with trace.use_span(NonRecordingSpan(parent), end_on_exit=False):
        yield


def trace_url(trace_id: str | None) -> str | None:
    """The trace viewer's address for `trace_id`, from $MAGICORE_TRACE_URL ({trace_id} in it)."""
    template = os.environ.get(URL_ENV, "").strip()
    if not trace_id or not template:
        return None
    return template.replace("{trace_id}", trace_id) if "{trace_id}" in template else template.rstrip("/") + "/" + trace_id

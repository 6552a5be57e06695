"""Tracing setup and the per-question workflow span.

    from magicore.graphs.tracing import setup_tracing
    setup_tracing("otlp")            # or "console", "jsonl:spans.jsonl", a list of them, or None

"otlp" sends to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT (default
http://localhost:4318) over HTTP, or over gRPC when OTEL_EXPORTER_OTLP_PROTOCOL=grpc (default
endpoint localhost:4317); headers come from OTEL_EXPORTER_OTLP_HEADERS. When the host
application has already set an SDK TracerProvider, magicore adds nothing and its spans go to
the host's exporters. Tracing off (no setup, no host provider) records nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter, SpanExportResult,
)  # fmt: skip

from magicore.tools import telemetry
from magicore.tools.errors import InputError

EXPORTERS_HELP = "console, otlp, or jsonl:PATH"


class JsonlSpanExporter(SpanExporter):
    """One span per line, each exactly as the SDK's `ReadableSpan.to_json()` writes it, on one
    line. Hand-written: the SDK's exporters print pretty JSON, not one object per line."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(s.to_json(indent=None) + "\n" for s in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _otlp_exporter() -> SpanExporter:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def make_exporter(spec: str) -> tuple[SpanExporter, bool]:
    """(exporter, export immediately?) for one spec."""
    spec = spec.strip()
    if spec == "console":
        return ConsoleSpanExporter(), True
    if spec == "otlp":
        return _otlp_exporter(), False
    if spec.startswith("jsonl:") and len(spec) > len("jsonl:"):
        return JsonlSpanExporter(spec.removeprefix("jsonl:")), True
    raise InputError(f"unknown trace exporter '{spec}': use {EXPORTERS_HELP}")


def host_provider() -> TracerProvider | None:
    """The SDK provider the application has already set globally, if any."""
    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


_installed: TracerProvider | None = None


def setup_tracing(
    exporters: str | Sequence[str] | None = None,
    *,
    service_name: str = "magicore",
    project: str | None = None,
    capture_content: bool | None = None,
) -> TracerProvider | None:
    """Configure tracing once; returns the provider spans go to (None: tracing stays off).

    Args:
        exporters: "console", "otlp", "jsonl:PATH" or several; None reads $MAGICORE_TRACE.
        project: the Phoenix project (resource attribute `openinference.project.name`).
        capture_content: record prompts and completions (default: $MAGICORE_TRACE_CONTENT=1).
    """
    global _installed
    if capture_content is None:
        capture_content = os.environ.get("MAGICORE_TRACE_CONTENT", "") in ("1", "true", "yes")
    telemetry.set_capture_content(capture_content)
    existing = host_provider()
    if existing is not None:
        return existing  # the host application's provider: add nothing
    if exporters is None:
        exporters = os.environ.get("MAGICORE_TRACE") or None
    if not exporters:
        return None
    specs = [exporters] if isinstance(exporters, str) else list(exporters)
    specs = [s for spec in specs for s in spec.split(",") if s.strip()]
    made = [make_exporter(s) for s in specs]  # a bad spec fails before anything is installed
    attributes: dict[str, Any] = {"service.name": service_name}
    if project or os.environ.get("PHOENIX_PROJECT_NAME"):
        attributes["openinference.project.name"] = project or os.environ["PHOENIX_PROJECT_NAME"]
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter, immediate in made:
        provider.add_span_processor(SimpleSpanProcessor(exporter) if immediate else BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _installed = provider
    return provider


def flush(timeout_ms: int = 10_000) -> None:
    """Export what is buffered (call before a short-lived process exits)."""
    provider = host_provider()
    if provider is not None:
        provider.force_flush(timeout_ms)


@contextlib.contextmanager
def workflow_span(method: str, question: str, *, session_id: str | None = None) -> Iterator[trace.Span]:
    """The root span of one question: `invoke_workflow {method}`, with a session id on every
    span inside. Wrap a direct `graph.ainvoke` in it to get the same tree as `asolve`."""
    session_id = session_id or str(uuid.uuid4())
    attributes = {"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": method,
                  "magicore.method": method, "magicore.question.chars": len(question),
                  "openinference.span.kind": "CHAIN"}  # Phoenix shows the root as a chain  # fmt: skip
    if telemetry.capture_content():
        attributes["magicore.question"] = question
    with telemetry.session(session_id), telemetry.span(f"invoke_workflow {method}", attributes=attributes) as span:
        yield span


def trace_id_of(span: trace.Span) -> str | None:
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid and span.is_recording() else None


def record_result(span: trace.Span, result: Any) -> None:
    """The run's outcome on the workflow span; token totals under magicore's own names so a
    backend that sums children's gen_ai.usage.* does not count them twice."""
    route = result.route or []
    telemetry.set_attributes(span, {
        "magicore.answer": result.answer, "magicore.rounds": result.rounds,
        "magicore.votes": json.dumps(result.votes), "magicore.route.hard": [d["hard"] for d in route],
        "magicore.route.orm_confidence": [d["orm_confidence"] for d in route],
        "magicore.route.prm_confidence": [d["prm_confidence"] for d in route],
        "magicore.usage.llm_calls": result.llm_calls, "magicore.usage.requests": result.requests,
        "magicore.usage.input_tokens": result.input_tokens, "magicore.usage.output_tokens": result.output_tokens,
    })  # fmt: skip

"""Tracing setup and the per-question workflow span.

    from magicore.graphs.tracing import setup_tracing
    setup_tracing("otlp")            # or "console", "jsonl:spans.jsonl", a list of them, or None

"otlp" sends to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT (default
http://localhost:4318) over HTTP, or over gRPC when OTEL_EXPORTER_OTLP_PROTOCOL=grpc (default
endpoint localhost:4317); headers come from OTEL_EXPORTER_OTLP_HEADERS. When the host
application has already set a tracer provider (any, not only the SDK's), magicore adds
nothing and its spans go to the host's provider (nowhere, if that is the API's no-op one).
Tracing off (no setup, no host provider) records nothing. The service name is "magicore"
unless OTEL_SERVICE_NAME or service.name in OTEL_RESOURCE_ATTRIBUTES says otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
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
        try:  # fail now, with one sentence, rather than at the first export
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            open(path, "a", encoding="utf-8").close()
        except OSError as error:
            reason = error.strerror or str(error)
            if isinstance(error, FileExistsError):  # makedirs met a file where a directory goes
                reason = f"{error.filename} is not a directory"
            elif isinstance(error, NotADirectoryError):
                reason = "a part of the path is not a directory"
            raise InputError(f"cannot write traces to '{path}': {reason}") from None

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
        return ConsoleSpanExporter(out=sys.stderr), True  # stdout stays the answer's (--json)
    if spec == "otlp":
        return _otlp_exporter(), False
    if spec.startswith("jsonl:") and len(spec) > len("jsonl:"):
        return JsonlSpanExporter(spec.removeprefix("jsonl:")), True
    raise InputError(f"unknown trace exporter '{spec}': use {EXPORTERS_HELP}")


def host_provider() -> trace.TracerProvider | None:
    """The provider already set globally (the application's or ours), if any: any provider but
    the API's default proxy, so a provider that is not the reference SDK's counts too."""
    provider = trace.get_tracer_provider()
    return None if isinstance(provider, trace.ProxyTracerProvider) else provider


_installed: TracerProvider | None = None


def _resource(service_name: str | None, project: str | None) -> Resource:
    attributes: dict[str, Any] = {}
    if service_name:
        attributes["service.name"] = service_name
    elif "service.name" not in OTELResourceDetector().detect().attributes:
        attributes["service.name"] = "magicore"  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win
    if project or os.environ.get("PHOENIX_PROJECT_NAME"):
        attributes["openinference.project.name"] = project or os.environ["PHOENIX_PROJECT_NAME"]
    return Resource.create(attributes)


def setup_tracing(
    exporters: str | Sequence[str] | None = None,
    *,
    service_name: str | None = None,
    project: str | None = None,
    capture_content: bool | None = None,
) -> trace.TracerProvider | None:
    """Configure tracing once; returns the provider spans go to (None: tracing stays off).

    Args:
        exporters: "console", "otlp", "jsonl:PATH" or several; None reads $MAGICORE_TRACE.
        service_name: the resource's service.name; None: $OTEL_SERVICE_NAME or service.name in
            $OTEL_RESOURCE_ATTRIBUTES when set, else "magicore".
        project: the Phoenix project (resource attribute `openinference.project.name`).
        capture_content: record prompts and completions (default: $MAGICORE_TRACE_CONTENT=1).
    """
    global _installed
    if capture_content is None:
        capture_content = os.environ.get("MAGICORE_TRACE_CONTENT", "") in ("1", "true", "yes")
    telemetry.set_capture_content(capture_content)
    existing = host_provider()
    if existing is not None:  # the host application's provider: add nothing (none can be added:
        # OpenTelemetry sets the global provider once); a no-op one means the host turned tracing off
        return None if isinstance(existing, trace.NoOpTracerProvider) else existing
    if exporters is None:
        exporters = os.environ.get("MAGICORE_TRACE") or None
    if not exporters:
        return None
    specs = [exporters] if isinstance(exporters, str) else list(exporters)
    specs = [s for spec in specs for s in spec.split(",") if s.strip()]
    made = [make_exporter(s) for s in specs]  # a bad spec fails before anything is installed
    provider = TracerProvider(resource=_resource(service_name, project))
    for exporter, immediate in made:
        provider.add_span_processor(SimpleSpanProcessor(exporter) if immediate else BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _installed = provider
    return provider


def flush(timeout_ms: int = 10_000) -> None:
    """Export what is buffered (call before a short-lived process exits)."""
    provider = host_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_ms)


def _workflow_attributes(method: str, question: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": method,
        "magicore.method": method, "magicore.question.chars": len(question),
        "openinference.span.kind": "CHAIN",  # Phoenix shows the root as a chain
    }  # fmt: skip
    if telemetry.capture_content():
        # OpenInference's input.value / output.value fill Phoenix's Input and Output columns
        attributes.update({"magicore.question": question, "input.value": question, "input.mime_type": "text/plain"})
    return attributes


@contextlib.contextmanager
def workflow_span(method: str, question: str, *, session_id: str | None = None) -> Iterator[trace.Span]:
    """The root span of one question: `invoke_workflow {method}`, with a session id on every
    span inside. Wrap a direct `graph.ainvoke` in it to get the same tree as `asolve`."""
    session_id = session_id or str(uuid.uuid4())
    attributes = _workflow_attributes(method, question)
    with telemetry.session(session_id), telemetry.span(f"invoke_workflow {method}", attributes=attributes) as span:
        yield span


class Workflow:
    """The root span of one question kept open across several blocks, each entered with
    `active()`, possibly in different asyncio tasks, until `end()`: `magicore bench` runs a
    problem in two phases with the batch calibration between them, and both land in one trace.
    `workflow_span` is the one-block form."""

    def __init__(self, method: str, question: str, *, session_id: str | None = None):
        self.session_id = session_id or str(uuid.uuid4())
        with telemetry.session(self.session_id):
            self.span = telemetry.start_span(f"invoke_workflow {method}",
                                             attributes=_workflow_attributes(method, question))  # fmt: skip

    @contextlib.contextmanager
    def active(self) -> Iterator[trace.Span]:
        """The span current, and its session on every span started, inside the block."""
        with telemetry.session(self.session_id), telemetry.use(self.span):
            yield self.span

    def end(self, result: Any = None) -> None:
        """End the span, with the run's outcome (`record_result`) when given a RunResult."""
        if result is not None:
            record_result(self.span, result)
        self.span.end()


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
    bounds = getattr(result, "inflight", None) or []
    if bounds:
        telemetry.set_attributes(span, {
            "magicore.inflight.server": [b["server"] for b in bounds],
            "magicore.inflight.bound": [b["bound"] for b in bounds],
            "magicore.inflight.ceiling": [b["ceiling"] for b in bounds],
            "magicore.inflight.peak": [b["peak"] for b in bounds],
            "magicore.inflight.backoffs": [b["backoffs"] for b in bounds],
        })  # fmt: skip
    if telemetry.capture_content() and result.answer is not None:
        telemetry.set_attributes(span, {"output.value": str(result.answer), "output.mime_type": "text/plain"})

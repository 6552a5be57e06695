"""OpenTelemetry spans in the GenAI semantic conventions, for everything magicore does.

Only the OpenTelemetry API is used here: with no SDK configured (tracing off) every span is a
non-recording no-op, and attribute work is skipped by checking `span.is_recording()`.
`magicore.graphs.tracing.setup_tracing` configures exporters. Spans made here are parented by
context variables, so links hold across asyncio fan-out (LangGraph `Send`) and subgraphs.

Span names: `invoke_workflow {method}`, `invoke_agent {role}`, `chat {model}`,
`execute_tool {tool}`. magicore's own facts are attributes under `magicore.`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

TRACER_NAME = "magicore"
#: Version of magicore's span layout; bump when names or attributes change meaning.
SCHEMA_VERSION = "1"

_session: contextvars.ContextVar[str | None] = contextvars.ContextVar("magicore_session", default=None)
_capture_content = False


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("magicore")
    except Exception:  # running from a source tree without metadata
        return None


# A ProxyTracer: it follows whatever provider is set later (ours or the host application's).
_tracer = trace.get_tracer(TRACER_NAME, _version(), attributes={"magicore.telemetry.version": SCHEMA_VERSION})


def tracer() -> trace.Tracer:
    return _tracer


def set_capture_content(enabled: bool) -> None:
    """Record prompts and completions on chat spans (off by default: they may be private)."""
    global _capture_content
    _capture_content = enabled


def capture_content() -> bool:
    return _capture_content


@contextlib.contextmanager
def session(session_id: str | None) -> Iterator[None]:
    """Put `session_id` on every span started inside the block (Langfuse needs it on each)."""
    token = _session.set(session_id)
    try:
        yield
    finally:
        _session.reset(token)


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = [v for v in value if v is not None]
            if value and not all(isinstance(v, (str, bool, int, float)) for v in value):
                value = [str(v) for v in value]
        elif not isinstance(value, (str, bool, int, float)):
            value = json.dumps(value, default=str)
        out[key] = value
    return out


def enabled() -> bool:
    """Whether any tracer provider is set (ours or the host's); without one, spans are skipped
    outright, so tracing off costs a type check per span."""
    return type(trace.get_tracer_provider()) is not trace.ProxyTracerProvider


def _with_session(attributes: dict[str, Any] | None) -> dict[str, Any]:
    attrs = dict(attributes or {})
    sid = _session.get()
    if sid:
        attrs["session.id"] = sid  # OpenInference (Phoenix) and Langfuse
        attrs["langfuse.session.id"] = sid  # Langfuse's preferred key
        attrs["gen_ai.conversation.id"] = sid  # GenAI semantic conventions
    return _clean(attrs)


def _failed(current: Span, error: BaseException) -> None:
    if current.is_recording():
        current.set_attribute("error.type", type(error).__qualname__)
        current.set_status(Status(StatusCode.ERROR, str(error)[:300]))


@contextlib.contextmanager
def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: dict[str, Any] | None = None,
         links: list[Link] | None = None) -> Iterator[Span]:  # fmt: skip
    """A span made current for the block; exceptions set its status to ERROR and `error.type`."""
    if not enabled():
        yield trace.INVALID_SPAN
        return
    with tracer().start_as_current_span(name, kind=kind, attributes=_with_session(attributes), links=links,
                                        record_exception=True, set_status_on_exception=False) as current:  # fmt: skip
        try:
            yield current
        except BaseException as error:
            _failed(current, error)
            raise


def start_span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: dict[str, Any] | None = None) -> Span:
    """A span started under the current one but neither made current nor ended: for a span that
    outlives one block (enter it with `use`, end it with `.end()`)."""
    if not enabled():
        return trace.INVALID_SPAN
    return tracer().start_span(name, kind=kind, attributes=_with_session(attributes))


@contextlib.contextmanager
def use(current: Span) -> Iterator[Span]:
    """Make a span from `start_span` current for the block without ending it; an exception
    records itself on it and sets its status to ERROR and `error.type`, as in `span`."""
    if not current.is_recording():
        yield current
        return
    with trace.use_span(current, end_on_exit=False, record_exception=True, set_status_on_exception=False):
        try:
            yield current
        except BaseException as error:
            _failed(current, error)
            raise


def set_attributes(target: Span, attributes: dict[str, Any]) -> None:
    if target.is_recording():
        target.set_attributes(_clean(attributes))


def agent_span(agent: str, model: Any, **attributes: Any):
    """`invoke_agent {agent}` around one role invocation."""
    return span(f"invoke_agent {agent}", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
        "gen_ai.request.model": model_name(model), "gen_ai.provider.name": provider_name(model),
        **attributes,
    })  # fmt: skip


def tool_span(tool: str, **attributes: Any):
    """`execute_tool {tool}` around a sandbox run or a reward-model call."""
    return span(f"execute_tool {tool}", attributes={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "gen_ai.tool.type": "function",
        **attributes,
    })  # fmt: skip


def model_name(model: Any) -> str:
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)


def provider_name(model: Any) -> str:
    meta = getattr(model, "metadata", None) or {}
    return str(meta.get("magicore_provider") or getattr(model, "_llm_type", "unknown"))


def current_link() -> str | None:
    """"trace_id:span_id" of the current span (to link an evaluation to what it evaluates)."""
    if not enabled():
        return None
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}:{ctx.span_id:016x}" if ctx.is_valid else None


def link_to(ref: str | None) -> list[Link]:
    if not ref:
        return []
    trace_id, span_id = (int(part, 16) for part in ref.split(":"))
    ctx = trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=trace.TraceFlags(1))
    return [Link(ctx, {"magicore.link": "evaluates"})]


def add_event(name: str, attributes: dict[str, Any]) -> None:
    """An event on the current span (the workflow span inside a run)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.add_event(name, _clean(attributes))


def usage_attributes(usage: Any) -> dict[str, int]:
    """Usage under magicore's own names: a parent's totals must not be summed again with its
    children's `gen_ai.usage.*` by backends that aggregate."""
    return {f"magicore.usage.{key}": int(getattr(usage, key)) for key in
            ("llm_calls", "requests", "input_tokens", "output_tokens")}  # fmt: skip


def record_evaluation(target: Span, name: str, score: float, **attributes: Any) -> None:
    """A `gen_ai.evaluation.result` event (GenAI semantic conventions) on `target`."""
    if target.is_recording():
        target.add_event("gen_ai.evaluation.result", _clean({
            "gen_ai.evaluation.name": name, "gen_ai.evaluation.score.value": float(score), **attributes,
        }))  # fmt: skip

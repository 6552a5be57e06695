"""Fixtures shared across test modules."""

import pytest


@pytest.fixture
def spans():
    """An in-memory exporter receiving every span finished during the test.

    It hangs off the global SDK TracerProvider (set once per process: OpenTelemetry allows the
    global provider to be set only once), which is also the host provider `setup_tracing`
    defers to.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()

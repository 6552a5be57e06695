"""What tracing costs: a scripted-model MAgICoRe run (hard path, k=8, one refinement round)
timed 20 times in three settings, each in a fresh process, medians printed.

- uninstrumented: magicore's span helpers replaced by no-ops (the floor)
- off: instrumented, no tracer provider (the default)
- on: an SDK provider exporting every span to memory

    python -m magicore.evals.bench_tracing [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import asyncio, contextlib, json, sys, time
mode, runs = sys.argv[1], int(sys.argv[2])
if mode == "on":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    provider = TracerProvider(); exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter)); trace.set_tracer_provider(provider)
from magicore.tools import telemetry
if mode == "uninstrumented":
    from opentelemetry.trace import INVALID_SPAN
    @contextlib.contextmanager
    def nothing(*args, **kwargs):
        yield INVALID_SPAN
    telemetry.span = nothing
from magicore.agents.fake import ScriptedFakeChatModel
from magicore.graphs.api import asolve
from magicore.graphs.config import MethodConfig
from magicore.graphs.state import Calibration
from magicore.tools.rewards.combine import ConstantReward, CombinedReward

answers = iter(str(i % 8) for i in range(10**9))
model = ScriptedFakeChatModel(respond=lambda m, i: f"Step 1: think.\nStep 2: so {i % 8}.\nThe answer is \\boxed{{{i % 8}}}.")
reward = CombinedReward([ConstantReward(0.3)], [ConstantReward(0.2)])
config = MethodConfig(k=8, rounds=1)
cal = Calibration(mu=1.0, sigma=0.1)

async def once():
    return await asolve("q?", method="magicore", model=model, reward=reward, config=config, calibration=cal)

times = []
for _ in range(runs + 2):  # two warm-up runs
    t = time.perf_counter(); r = asyncio.run(once()); times.append(time.perf_counter() - t)
assert r.rounds == 1 and r.llm_calls == 24
print(json.dumps(times[2:]))
"""


def measure(mode: str, runs: int) -> list[float]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(runs)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    medians = {mode: statistics.median(measure(mode, args.runs)) for mode in ("uninstrumented", "off", "on")}
    for mode, value in medians.items():
        print(f"{mode:>15}: median {value * 1000:7.1f} ms per run ({args.runs} runs)")
    print(f"off / uninstrumented: {medians['off'] / medians['uninstrumented']:.3f}")
    print(f"on / off:             {medians['on'] / medians['off']:.3f}")


if __name__ == "__main__":
    main()

"""Start-up overhead of the Python sandbox: 50 runs of `print(1)`, median and p90 per call.

Run with `python -m magicore.evals.bench_sandbox` (or `python evals/bench_sandbox.py`). The bare
interpreter (`python -I -c 'print(1)'` in a subprocess) is timed the same way, so the cost of the
sandbox itself is the difference.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from magicore.tools.sandbox import run_python, sandbox_capabilities

RUNS = 50


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, round(0.9 * len(ordered)) - 1)]


def _time(call) -> list[float]:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def _sandboxed() -> None:
    res = run_python("print(1)")
    if res.stdout != "1\n":
        raise SystemExit(f"sandbox run failed: {res.summary()}: {res.stderr}")


def _bare() -> None:
    subprocess.run([sys.executable, "-I", "-c", "print(1)"], capture_output=True, check=True)


def main() -> None:
    start = time.perf_counter()
    layers = sandbox_capabilities()  # the one-time probe
    probe_s = time.perf_counter() - start
    sandbox_med, sandbox_p90 = _stats(_time(_sandboxed))
    bare_med, bare_p90 = _stats(_time(_bare))
    print(f"protections active: {', '.join(layers)}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(timings mean little on a loaded machine)")
    print(f"one-time capability probe: {probe_s * 1000:.0f} ms")
    print(f"sandboxed print(1), {RUNS} runs: median {sandbox_med * 1000:.1f} ms, p90 {sandbox_p90 * 1000:.1f} ms")
    print(f"bare python -I print(1), {RUNS} runs: median {bare_med * 1000:.1f} ms, p90 {bare_p90 * 1000:.1f} ms")
    print(f"sandbox overhead per call: median {(sandbox_med - bare_med) * 1000:.1f} ms, "
          f"p90 {(sandbox_p90 - bare_p90) * 1000:.1f} ms")


if __name__ == "__main__":
    main()

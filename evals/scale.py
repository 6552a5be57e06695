"""The scale-out measurement of docs/scale.md: throughput and wall time against the critical
path for 1, 2 and 4 model replicas, the local engine and 1 or 2 Ray workers.

Mock replicas (evals/mock_server.py, each its own process) answer every request after a fixed
latency. Every problem is Self-Consistency with one n=k request, so a problem costs one call:
the critical path is ceil(problems / slots) x latency, where slots = the requests that can be
in flight at once = min(problems at a time, replicas x per-server bound), times the workers
(each worker has its own bounds). Client CPU per request is the engine processes' CPU time
(driver and workers) divided by the requests sent. Ray workers' start (a fresh process imports
magicore and LangChain) is reported apart and left out of the wall time and the CPU.

    python -m magicore.evals.scale --problems 64 --latency 0.2 --bound 4 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from magicore.evals.datasets import Problem


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_replicas(count: int, latency: float) -> tuple[list[subprocess.Popen], list[str]]:
    procs, urls = [], []
    for _ in range(count):
        port = _free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "magicore.evals.mock_server", "--port", str(port),
                                       "--latency", str(latency)], stdout=subprocess.DEVNULL))  # fmt: skip
        urls.append(f"http://127.0.0.1:{port}/v1")
    for url in urls:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mock replica {url} did not start") from None
                time.sleep(0.05)
    return procs, urls


def problems(n: int) -> list[Problem]:
    return [Problem(id=f"s{i}", question=f"Question {i}: what is 40 + 2?", answer="42", dataset="scale")
            for i in range(n)]  # fmt: skip


def _cpu_seconds() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _ray_cpu_seconds() -> float:
    """CPU time of this machine's Ray worker processes (they are not this process's children)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"ray::BenchWorker" not in cmd and b"BenchWorker" not in Path(f"/proc/{pid}/comm").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            continue
    return total


def run_once(engine: str, urls: list[str], args, workers: int = 1) -> dict:
    from magicore.agents.backends import chat_model, parse_spec
    from magicore.evals.bench import BenchSettings, Models, run_bench

    spec = f"vllm:mock-model@{','.join(urls)}"
    settings = BenchSettings(dataset="scale", methods=[f"sc@{args.k}"], k=args.k, model=spec, reward="const:0.5",
                             concurrency=args.concurrency)  # fmt: skip
    model = chat_model(parse_spec(spec), timeout=60)  # the bound: $MAGICORE_MAX_CONCURRENCY, set in main
    items = problems(args.problems)
    with tempfile.TemporaryDirectory() as out:
        cpu0 = _cpu_seconds()
        started = time.perf_counter()
        if engine == "local":
            results = asyncio.run(run_bench(items, settings, Models(model, reward="const:0.5"), out,
                                            progress=False, log=lambda _t: None))  # fmt: skip
            worker_cpu, start_seconds = 0.0, 0.0
        else:
            from magicore.evals.bench_ray import WorkerPool, run_bench_ray
            from magicore.evals.ray_worker import WorkerSpecs

            holder: dict = {}
            ready, shutdown = WorkerPool.ready, WorkerPool.shutdown

            async def measure_ready(pool):  # worker start (a fresh process imports magicore) is apart
                answer = await ready(pool)
                holder["ready_at"], holder["cpu_at_ready"] = time.perf_counter(), _ray_cpu_seconds()
                holder["cpu_self_at_ready"] = _cpu_seconds()
                return answer

            def measure_shutdown(pool):  # the workers' CPU before they are stopped
                holder["cpu"] = _ray_cpu_seconds()
                shutdown(pool)

            WorkerPool.ready, WorkerPool.shutdown = measure_ready, measure_shutdown
            try:
                results = asyncio.run(run_bench_ray(items, settings, Models(model, reward="const:0.5"),
                                                    WorkerSpecs(spec, "const:0.5", timeout=60), out, workers=workers,
                                                    progress=False, log=lambda _t: None))  # fmt: skip
            finally:
                WorkerPool.ready, WorkerPool.shutdown = ready, shutdown
            worker_cpu = holder["cpu"] - holder["cpu_at_ready"]
            start_seconds = holder["ready_at"] - started
            started, cpu0 = holder["ready_at"], holder["cpu_self_at_ready"]
        wall = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu0 + worker_cpu
    records = results[f"sc@{args.k}"].values()
    assert len(records) == args.problems and not any(r["error"] for r in records), "a problem failed"
    requests = sum(r["requests"] for r in records)
    slots = min(args.concurrency, len(urls) * args.bound) * workers
    critical = math.ceil(args.problems / slots) * args.latency
    return {"wall": wall, "critical": critical, "cpu_ms_per_request": 1000 * cpu / requests, "start": start_seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--bound", type=int, default=4, help="requests in flight per server (per worker)")
    parser.add_argument("--concurrency", type=int, default=16, help="problems at a time (per worker)")
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--endpoints", default="1,2,4")
    parser.add_argument("--ray-workers", default="1,2", help="'' to skip Ray")
    args = parser.parse_args(argv)
    os.environ["MAGICORE_MAX_CONCURRENCY"] = str(args.bound)  # before Ray starts: its workers inherit it
    endpoints = [int(x) for x in args.endpoints.split(",") if x]
    workers = [int(x) for x in args.ray_workers.split(",") if x]
    procs, urls = start_replicas(max(endpoints), args.latency)
    rows = []
    try:
        configs = [("local", e, 1) for e in endpoints] + [("ray", e, w) for w in workers for e in endpoints]
        if workers:
            import ray

            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING",
                     log_to_driver=False)  # fmt: skip
        for engine, e, w in configs:
            runs = [run_once(engine, urls[:e], args, w) for _ in range(args.repeat)]
            wall = statistics.median(r["wall"] for r in runs)
            critical = runs[0]["critical"]
            cpu = statistics.median(r["cpu_ms_per_request"] for r in runs)
            start = statistics.median(r["start"] for r in runs)
            rows.append((engine, w if engine == "ray" else "-", e, wall, critical, args.problems / wall, cpu, start))
            print(f"{engine} workers={w} endpoints={e}: wall {wall:.2f} s, critical {critical:.2f} s", file=sys.stderr)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs; "
          f"median of {args.repeat} runs")
    print("| engine | Ray workers | endpoints | worker start (s) | wall after start (s) | critical path (s) | "
          "wall / critical | problems/s | client CPU per request (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for engine, w, e, wall, critical, rate, cpu, start in rows:
        print(f"| {engine} | {w} | {e} | {start:.1f} | {wall:.2f} | {critical:.2f} | {wall / critical:.2f}x | "
              f"{rate:.1f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()

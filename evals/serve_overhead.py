"""The server's overhead: what `magicore serve` adds to each request over the method's own time.

A mock model server (evals/mock_server.py, its own process) answers after a fixed latency; a
`magicore serve` process runs the method; C clients (aiohttp, in this process) each send
requests one after another. For every request, the client's wall time is compared with the
method's own time, which the server reports (`magicore.seconds`, measured around the graph run):
overhead = client time - method time (HTTP, parsing, validation, the conversation store, the
response). Medians and 90th percentiles over all requests, per concurrency.

    python -m magicore.evals.serve_overhead --concurrency 1,16,64 --requests 128 --latency 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from magicore.evals.overhead import MockProcess
from magicore.evals.serve_process import QUESTION, ServeProcess


@dataclass
class Row:
    concurrency: int
    requests: int
    method_ms: float  # median of the method's own time
    client_ms: float  # median of the client's time
    overhead_ms: float  # median of client - method
    overhead_p90_ms: float
    ratio: float  # median of client / method
    per_second: float


async def _measure(base_url: str, concurrency: int, total: int, body: dict) -> Row:
    import aiohttp

    pairs: list[tuple[float, float]] = []
    per_client = max(1, total // concurrency)

    async def one_client(session, i: int) -> None:
        for j in range(per_client):
            payload = {**body, "messages": [{"role": "user", "content": f"{QUESTION} ({i}.{j})"}]}
            started = time.perf_counter()
            async with session.post(base_url + "/chat/completions", json=payload) as response:
                data = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {data}")
            pairs.append((time.perf_counter() - started, data["magicore"]["seconds"]))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        await one_client(session, -1)  # warm up: graph compiled, connections open
        pairs.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one_client(session, i) for i in range(concurrency)))
        wall = time.perf_counter() - started
    overheads = sorted(client - method for client, method in pairs)
    return Row(concurrency, len(pairs), 1000 * statistics.median(m for _, m in pairs),
               1000 * statistics.median(c for c, _ in pairs), 1000 * statistics.median(overheads),
               1000 * overheads[int(0.9 * (len(overheads) - 1))],
               statistics.median(c / m for c, m in pairs), len(pairs) / wall)  # fmt: skip


def table(rows: list[Row]) -> str:
    lines = ["| clients | requests | method's own time (median) | client time (median) | server overhead "
             "(median) | overhead p90 | client / method (median) | requests/s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r.concurrency} | {r.requests} | {r.method_ms:.0f} ms | {r.client_ms:.0f} ms | "
                     f"{r.overhead_ms:.1f} ms | {r.overhead_p90_ms:.1f} ms | {r.ratio:.2f}x | "
                     f"{r.per_second:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16,64", help="clients at once, comma-separated")
    parser.add_argument("--requests", type=int, default=128, help="requests per concurrency level")
    parser.add_argument("--latency", type=float, default=0.2, help="the mock model's seconds per call")
    parser.add_argument("--model", default="magicore-sc", help="the method's model name")
    parser.add_argument("-k", type=int, default=4, help="chains per request")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON lines too")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    body = {"model": args.model, "k": args.k, "store": True}
    rows = []
    with MockProcess(args.latency, None) as mock, tempfile.TemporaryDirectory() as tmp:
        serve_args = ("--model", f"mock-model@{mock.base_url}", "--reward", "verifier", "--max-runs",
                      str(max(levels)), "--checkpoint", f"sqlite:{Path(tmp) / 'conversations.sqlite'}")  # fmt: skip
        with ServeProcess(*serve_args, log=Path(tmp) / "serve.log") as server:
            for level in levels:
                row = asyncio.run(_measure(server.base_url, level, max(args.requests, level), body))
                rows.append(row)
                if args.json:
                    print(json.dumps(row.__dict__), file=sys.stderr)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Aggregate decoding speed of the embedded servers: k chains of one GSM8K question at once.

For each engine (llama-server with parallel slots; llama-cpp-python's server) and each k, the
server is started on the model, warmed up with one short request, then sent k concurrent chat
requests (temperature 0.8, `--max-tokens` each, distinct seeds); the figure is the output
tokens of all k over the wall time from the first request to the last answer. Each cell is the
median of `--repeats` runs. The load average before each engine is printed, since a busy
machine slows every row.

    python -m magicore.evals.decode_bench --model embedded --ks 1,4,8 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import aiohttp

from magicore.agents import embedded
from magicore.evals.datasets import FILES, default_data_dir

PROMPT = ("Solve the problem. Reason in numbered steps (Step 1: ...), then give the final answer "
          "as \\boxed{{ANSWER}}.\n\n{question}")  # fmt: skip


async def _one(session, url: str, model: str, question: str, max_tokens: int, seed: int) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT.format(question=question)}],
            "temperature": 0.8, "top_p": 0.95, "max_tokens": max_tokens, "seed": seed}  # fmt: skip
    async with session.post(f"{url}/chat/completions", json=body) as response:
        payload = await response.json()
    return int(payload["usage"]["completion_tokens"])


async def _round(url: str, model: str, question: str, k: int, max_tokens: int, seed: int) -> tuple[int, float]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        started = time.perf_counter()
        tokens = await asyncio.gather(*(_one(session, url, model, question, max_tokens, seed + i) for i in range(k)))
        return sum(tokens), time.perf_counter() - started


def measure(engine: str, gguf: Path, name: str, ks: list[int], question: str, max_tokens: int, repeats: int,
            threads: int | None) -> dict[int, dict]:  # fmt: skip
    binary = None
    if engine == "llama-server":
        binary = embedded.server_binary()
        if binary is None:
            raise SystemExit("llama-server is not available (see magicore setup)")
    server = embedded.EmbeddedServer(gguf, model_name=name, binary=binary, parallel=max(ks), threads=threads)
    server.start()
    try:
        asyncio.run(_round(server.base_url, name, "Say OK.", 1, 4, 0))  # warm-up
        out = {}
        for k in ks:
            runs = [asyncio.run(_round(server.base_url, name, question, k, max_tokens, 100 * r)) for r in range(repeats)]
            rates = [tokens / seconds for tokens, seconds in runs]
            out[k] = {"tokens_per_s": statistics.median(rates), "runs": [{"tokens": t, "seconds": round(s, 2)} for t, s in runs]}
            print(f"{engine:18s} k={k:<2d} {statistics.median(rates):6.1f} tokens/s  "
                  f"(runs: {', '.join(f'{r:.1f}' for r in rates)})", flush=True)  # fmt: skip
        return out
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m magicore.evals.decode_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default", help="embedded model name or GGUF path (default: default)")
    parser.add_argument("--engines", default="llama-server,llama-cpp-python")
    parser.add_argument("--ks", default="1,4,8")
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", help="write the figures here (JSON)")
    args = parser.parse_args(argv)
    data = default_data_dir()
    if data is None:
        print("decode_bench: no data directory (../shared/data)", file=sys.stderr)
        return 2
    question = json.loads((data / FILES["gsm8k"]).read_text(encoding="utf-8").splitlines()[0])["question"]
    gguf, name = embedded.locate(None if args.model == "default" else args.model)
    ks = [int(k) for k in args.ks.split(",")]
    results = {"model": name, "cpus": os.cpu_count(), "max_tokens": args.max_tokens, "engines": {}}
    for engine in args.engines.split(","):
        load = os.getloadavg()
        print(f"{engine}: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
        figures = measure(engine, gguf, name, ks, question, args.max_tokens, args.repeats, args.threads)
        results["engines"][engine] = {"load_before": load, "k": figures}
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

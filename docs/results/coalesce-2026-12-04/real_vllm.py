"""MAgICoRe against a real vLLM on this CPU, calls batched or one request each, alternating.

    python real_vllm.py http://127.0.0.1:PORT/v1 [--problems 16] [--k 8] [--repeat 2]

The server is vLLM 0.32.0 (CPU build) serving the tiny random Llama of
tests/integration/build_tiny_reward_models.py as a chat model, started as in
tests/integration/test_vllm_batch.py; its text means nothing, so MAgICoRe is forced down its hard
path (mu above any reward) and every problem runs its rounds. What is compared is the wall time,
the HTTP requests and this process's CPU for the same calls, on a machine where the client and
the server share 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from magicore.agents.backends import chat_model, parse_spec
from magicore.agents.coalesce import coalescer
from magicore.evals.overhead import ALWAYS_HARD
from magicore.graphs.api import asolve
from magicore.graphs.build import build_graph
from magicore.graphs.config import MethodConfig


async def one_run(url: str, coalesce: bool, problems: int, k: int, rounds: int) -> dict:
    model = chat_model(parse_spec(f"vllm:tiny-chat@{url}"), coalesce=coalesce, timeout=600, max_retries=0)
    config = MethodConfig(k=k, rounds=rounds, max_tokens=16)
    graph = build_graph("magicore", model=model, reward="const:0.5", config=config)
    cpu, started = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(asolve(f"Problem {i}: what is {i} + 2?", method="magicore", model=model,
                                            graph=graph, calibration=ALWAYS_HARD) for i in range(problems)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    calls = sum(r.requests for r in results)
    stats = (await coalescer(model)).stats
    http = calls - stats.saved
    return {"coalesce": coalesce, "wall": wall, "calls": calls, "http": http, "cpu_ms_per_call": 1000 * cpu / calls,
            "rounds": sum(r.rounds for r in results) / problems}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(one_run(args.url, True, 1, 4, 1))  # warm up the server and the client
    print("| batched | wall s | calls | HTTP requests | client CPU ms per call | rounds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for _ in range(args.repeat):
        for coalesce in (True, False):
            r = asyncio.run(one_run(args.url, coalesce, args.problems, args.k, args.rounds))
            print(f"| {'yes' if r['coalesce'] else 'no'} | {r['wall']:.2f} | {r['calls']} | {r['http']} "
                  f"| {r['cpu_ms_per_call']:.2f} | {r['rounds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()

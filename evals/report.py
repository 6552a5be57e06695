"""The benchmark report: a markdown table per method and a plot of accuracy against LLM calls.

Reads what evals/bench.py wrote in --out (run.json, {method}.jsonl, calibration.json) and
writes report.md and accuracy_vs_calls.png there. Accuracy counts an errored problem as wrong
(errors are shown in their own column); its 95% interval is Wilson's score interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from magicore.evals.bench import load_results, read_settings

Z95 = 1.959963984540054
PLOT_NAME = "accuracy_vs_calls.png"
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
    )


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


def markdown_table(rows: Sequence[MethodSummary]) -> str:
    head = ("| method | n | accuracy | 95% CI | errors | LLM calls | input tokens | output tokens "
            "| seconds | routed hard | rounds |")  # fmt: skip
    lines = [head, "|" + " --- |" * 11]
    for s in rows:
        low, high = s.interval
        seconds = f"{s.seconds:.1f}" if s.seconds is not None else "-"
        hard = f"{100 * s.hard:.0f}%" if s.hard is not None else "-"
        lines.append(
            f"| {s.method} | {s.n} | {100 * s.accuracy:.1f}% ({s.correct}/{s.n}) | {100 * low:.1f}-{100 * high:.1f}% "
            f"| {s.errors} | {s.llm_calls:.1f} | {s.input_tokens:.0f} | {s.output_tokens:.0f} | {seconds} "
            f"| {hard} | {s.rounds:.2f} |"
        )
    return "\n".join(lines)


def _describe_run(settings: dict, out: Path) -> list[str]:
    ids = settings.get("problem_ids") or []
    subset = f", subset {settings['subset']}" if settings.get("subset") else ""
    lines = [
        f"- problems: {len(ids)} of {settings.get('dataset')}{subset} (seed {settings.get('seed')}, "
        f"limit {settings.get('limit')})",
        f"- model: `{settings.get('model')}`; reward (magicore, bok): `{settings.get('reward')}`",
        f"- budget: k = {settings.get('k')}, rounds T = {settings.get('rounds')} (Self-Refine "
        f"{settings.get('self_refine_rounds', 4)}), max tokens "
        f"{settings.get('max_tokens') or 'by default 1024 (embedded) or 4096 (server)'}, "
        f"temperature {settings.get('temperature')}, "
        f"top_p {settings.get('top_p')}; {settings.get('concurrency')} problems at a time",
    ]
    cal_path = out / "calibration.json"
    if "magicore" in settings.get("methods", []):
        if settings.get("calibration") == "batch" and cal_path.exists():
            cal = json.loads(cal_path.read_text(encoding="utf-8"))
            missing = f", {cal['missing']} missing" if cal.get("missing") else ""
            lines.append(f"- magicore calibration: batch (first chain of every problem): mu = {cal['mu']:.4f}, "
                         f"sigma = {cal['sigma']:.4f}, n = {cal.get('n')}{missing}")  # fmt: skip
        else:
            lines.append(f"- magicore calibration: {settings.get('calibration')}")
    return lines


def write_report(out: str | Path, *, plot: bool = True) -> str:
    """Write report.md (and the plot) in `out`; returns the markdown."""
    out = Path(out)
    settings = read_settings(out)
    rows = summaries(out)
    parts = ["# Benchmark report", "", *_describe_run(settings, out), "", markdown_table(rows), ""]
    parts.append("Accuracy counts errors as wrong; 95% CI is Wilson's score interval. LLM calls count "
                 "completions (an n=k request counts k); tokens, seconds (wall time, concurrent problems "
                 "overlap) and rounds are means per problem; routed hard is the share of problems the "
                 "first easy/hard test sent to refinement.")  # fmt: skip
    if plot and rows:
        path = plot_accuracy_vs_calls(rows, out / PLOT_NAME, title=_plot_title(settings))
        if path is not None:
            parts += ["", f"![accuracy vs LLM calls]({PLOT_NAME})"]
    text = "\n".join(parts) + "\n"
    (out / REPORT_NAME).write_text(text, encoding="utf-8")
    return text


def _plot_title(settings: dict) -> str:
    subset = f" {settings['subset']}" if settings.get("subset") else ""
    n = len(settings.get("problem_ids") or [])
    return f"{settings.get('dataset')}{subset}, {n} problems, k={settings.get('k')}"


def plot_accuracy_vs_calls(rows: Sequence[MethodSummary], path: Path, *, title: str = "") -> Path | None:
    """Accuracy (with its 95% interval) against mean LLM calls, one point per method."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in rows if r.n]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    span = (max(r.llm_calls for r in rows) - min(r.llm_calls for r in rows)) or 1.0
    placed: list[tuple[float, float]] = []  # labels of nearby points are stacked, not overlaid
    for r in rows:
        low, high = r.interval
        below, above = max(0.0, r.accuracy - low), max(0.0, high - r.accuracy)  # rounding can dip below 0
        ax.errorbar([r.llm_calls], [100 * r.accuracy], yerr=[[100 * below], [100 * above]], fmt="o", capsize=4,
                    label=r.method)  # fmt: skip
        near = sum(abs(x - r.llm_calls) <= 0.05 * span and abs(y - 100 * r.accuracy) <= 6 for x, y in placed)
        placed.append((r.llm_calls, 100 * r.accuracy))
        ax.annotate(r.method, (r.llm_calls, 100 * r.accuracy), textcoords="offset points",
                    xytext=(6, 4 - 11 * near))  # fmt: skip
    ax.margins(x=0.15)
    calls = [r.llm_calls for r in rows if r.llm_calls > 0]
    if calls and max(calls) / min(calls) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("mean LLM calls per problem")
    ax.set_ylabel("accuracy (%) with 95% CI")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

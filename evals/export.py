"""Training data from benchmark runs: `magicore export RUN_DIR --format sft|critique|dpo`.

Reads the records `magicore bench` wrote ({config}.jsonl), judges every solution by the dataset's
ground truth (evals/export_judges.py), builds the examples of one format (evals/export_formats.py),
filters them, leaves out duplicates and writes JSONL. Deterministic: runs in the order given,
configurations in run.json's order, problems in run.json's order, solutions in record order; a
duplicate (the same training content) keeps its first source. Imports agents and tools; never ui.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from magicore.agents.prompts import detect_family
from magicore.evals.bench_store import JsonlLog, load_results
from magicore.evals.export_formats import FORMATS, critique_examples, dpo_examples, sft_examples
from magicore.evals.export_judges import judge_for
from magicore.evals.export_traces import Solution, trace_record
from magicore.tools.errors import InputError

#: Files in a run directory that are not configuration records.
NOT_RECORDS = {"samples.jsonl", "scores.jsonl"}
CONTENT_KEYS = ("messages", "prompt", "completion", "chosen", "rejected")


@dataclass
class Filters:
    """Which examples to keep; None means no filter. A filter that a record or solution cannot
    answer (the route of a method without routing, the step scores of a Self-Refine draft) drops it."""

    rounds: set[int] | None = None  # the round of the solution an example ends with (0: sampled)
    methods: set[str] | None = None  # method names (magicore, sc, bok, self-refine) or configurations
    route: str | None = None  # "easy" or "hard": the record's first easy/hard decision
    min_step_score: float | None = None  # every step score of the solution at least this

    def record_ok(self, record: dict) -> bool:
        if self.methods is not None and not ({record.get("method"), record.get("config")} & self.methods):
            return False
        if self.route is not None and record.get("hard") is not (self.route == "hard"):
            return False
        return True

    def solution_ok(self, _record: dict, solution: Solution) -> bool:
        if self.rounds is not None and solution.round not in self.rounds:
            return False
        if self.min_step_score is not None:
            scores = solution.step_scores
            if not scores or min(scores) < self.min_step_score:
                return False
        return True


@dataclass
class ExportStats:
    records: int = 0  # records the filters kept, failed problems aside
    errors: int = 0  # records of problems whose run failed: nothing to learn from
    examples: int = 0
    duplicates: int = 0
    unlinked_reviews: int = 0
    by_kind: Counter = field(default_factory=Counter)

    def summary(self, fmt: str, out: Path) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.by_kind.items()) if kind != fmt)
        text = (f"wrote {self.examples} {fmt} examples{f' ({kinds})' if kinds else ''} to {out} from "
                f"{self.records} records; {self.duplicates} duplicates left out")  # fmt: skip
        if self.errors:
            text += f"; {self.errors} failed problems skipped"
        if self.unlinked_reviews:
            text += (f"; {self.unlinked_reviews} reviews skipped because their record does not keep the "
                     "reviewed solution (written by an older magicore)")  # fmt: skip
        return text


def read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """run.json and the run's records: configurations in run.json's order (then any others by
    name), problems in run.json's order (then any others by id); the last record of each problem."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is not a directory; give the --out directory of a magicore bench run")
    try:
        settings = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{run_dir} holds no benchmark run (no run.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {run_dir / 'run.json'}: {e}") from None
    found = sorted(p.name[: -len(".jsonl")] for p in run_dir.glob("*.jsonl")
                   if p.name not in NOT_RECORDS and not p.name.endswith(".calibration_chains.jsonl"))  # fmt: skip
    listed = settings.get("methods", [])
    configs = [c for c in listed if c in found] + [c for c in found if c not in listed]
    order = {pid: i for i, pid in enumerate(settings.get("problem_ids") or [])}
    records = []
    for config in configs:
        by_id = load_results(run_dir, config)
        records += sorted(by_id.values(), key=lambda r: (order.get(r["id"], len(order)), str(r["id"])))
    return settings, records


def _families(run_dir: Path) -> dict[str, str]:
    """The task family each problem was sampled as (samples.jsonl), so prompts match the run's."""
    samples = JsonlLog(Path(run_dir) / "samples.jsonl").read()
    return {s["id"]: s["family"] for s in samples if "id" in s and s.get("family")}


def examples(run_dirs: Sequence[Path], fmt: str, filters: Filters | None = None, *, only_correct: bool = False,
             stats: ExportStats | None = None) -> list[dict]:  # fmt: skip
    """The examples of format `fmt` from the runs, filtered, without duplicates, in a fixed order."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    filters = filters or Filters()
    stats = stats if stats is not None else ExportStats()
    seen: set[str] = set()
    out: list[dict] = []
    for run_dir in run_dirs:
        settings, records = read_run(run_dir)
        judge = judge_for(settings.get("dataset"))
        families = _families(run_dir)
        run_name = Path(run_dir).resolve().name
        for record in records:
            if not filters.record_ok(record):
                continue
            if record.get("error"):
                stats.errors += 1
                continue
            stats.records += 1
            base = {"run": run_name, "config": record.get("config"), "method": record.get("method"),
                    "problem": record["id"]}  # fmt: skip
            trace = trace_record(record, judge, base)
            stats.unlinked_reviews += trace.unlinked_reviews
            family = families.get(record["id"]) or detect_family(record["question"])
            for example in _build(fmt, trace, family, filters, only_correct):
                key = json.dumps([example.get(k) for k in CONTENT_KEYS], ensure_ascii=False, sort_keys=True)
                if key in seen:
                    stats.duplicates += 1
                    continue
                seen.add(key)
                out.append(example)
                stats.by_kind[example.get("task") or example.get("pair") or fmt] += 1
    stats.examples = len(out)
    return out


def _build(fmt: str, trace, family: str, filters: Filters, only_correct: bool) -> Iterable[dict]:
    keep = filters.solution_ok
    if fmt == "sft":
        return sft_examples(trace, family, keep)
    if fmt == "critique":
        return critique_examples(trace, family, keep, only_correct)
    return dpo_examples(trace, family, keep)


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """One JSON object per line, written to a temporary file and moved into place."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise InputError(f"cannot write {path}: the directory {path.parent} does not exist")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror}") from None


def export(run_dirs: Sequence[Path], fmt: str, out: Path, filters: Filters | None = None, *,
           only_correct: bool = False) -> ExportStats:  # fmt: skip
    """Write the examples of `fmt` from `run_dirs` to `out` (JSONL); returns what was written."""
    stats = ExportStats()
    rows = examples(run_dirs, fmt, filters, only_correct=only_correct, stats=stats)
    write_jsonl(out, rows)
    return stats

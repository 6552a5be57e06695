"""Run a candidate program on a code question's examples in the sandbox, and remember the outcome.

One sandbox run per (question, program): the program is loaded, then called on every visible
example (compared with its expected value) and every extra input (output recorded), each call
with its own time limit. The outcome feeds the execution reward (tools/rewards/execution.py),
the Reviewer's evidence and the grouping of programs by behaviour. A program that crashes,
hangs, exits or floods its output only ends its own run; calls it never reached are reported as
such. Imports only the standard library and magicore.tools.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import secrets
import textwrap
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from magicore.tools.programs import CodeQuestion, Example, assemble, extra_inputs, parse_code_question
from magicore.tools.sandbox import arun_python

CALL_TIMEOUT_S = 2.0  # per call of the function
LOAD_TIMEOUT_S = 5.0  # defining the program (module-level code)
RUN_LIMIT_S = 20.0  # the whole run at most, sandbox start-up included
MEMO_SIZE = 1024  # (question, program) outcomes remembered
MAX_TIMEOUTS = 2  # calls timed out after which the rest are skipped (a hanging program costs little)

Status = Literal["passed", "failed", "error", "timeout", "not run", "ran"]

# The harness runs inside the sandbox. Results go to a duplicate of the real stdout, each line
# tagged with a per-run nonce; the candidate's own prints go to a buffer.
_HARNESS = r'''
import io, json, math, os, signal, sys, traceback
_OUT = os.dup(1)
_NONCE, _ENTRY, _PROGRAM, _CASES, _CALL_S, _LOAD_S, _MAX_TIMEOUTS = {args}
_timeouts = 0
def _emit(obj):
    os.write(_OUT, (_NONCE + json.dumps(obj) + "\n").encode())
class _Timeout(BaseException):
    pass
def _alarm(signum, frame):
    raise _Timeout()
signal.signal(signal.SIGALRM, _alarm)
def _same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        except TypeError:
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:
        return False
def _canon(v, depth=0):
    # the grouping key of a value: floats to 10 significant digits (0.1*3 and 0.3 agree), sets and
    # dicts in sorted order (their repr's order changes with each run's hash seed)
    if depth > 20:
        return "..."
    if isinstance(v, float) and math.isfinite(v):
        return repr(float(f"{v:.10g}"))
    if isinstance(v, (list, tuple)):
        inner = ",".join(_canon(x, depth + 1) for x in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner})"
    if isinstance(v, (set, frozenset)):
        return "{" + ",".join(sorted(_canon(x, depth + 1) for x in v)) + "}"
    if isinstance(v, dict):
        return "{" + ",".join(sorted(_canon(k, depth + 1) + ":" + _canon(x, depth + 1) for k, x in v.items())) + "}"
    return repr(v)
def _tb(e):
    lines = traceback.format_exception(type(e), e, e.__traceback__.tb_next)  # without the harness's frame
    return "".join(lines)[-1500:]
_buf = io.StringIO()
sys.stdout = _buf
_ns = {"__name__": "solution"}  # as HumanEval's harness: an `if __name__ == "__main__":` block does not run
try:
    signal.setitimer(signal.ITIMER_REAL, _LOAD_S)
    exec(compile(_PROGRAM, "<solution>", "exec"), _ns)
    signal.setitimer(signal.ITIMER_REAL, 0)
except _Timeout:
    _emit({"load": "timeout"})
    sys.exit(0)
except BaseException as e:
    signal.setitimer(signal.ITIMER_REAL, 0)
    _emit({"load": "error", "error": f"{type(e).__name__}: {e}"[:500], "traceback": _tb(e)})
    sys.exit(0)
if not callable(_ns.get(_ENTRY)):
    _emit({"load": "error", "error": f"the program defines no function {_ENTRY}()", "traceback": ""})
    sys.exit(0)
_emit({"load": "ok"})
for _i, (_call, _expected) in enumerate(_CASES):
    _buf.seek(0); _buf.truncate()
    _row = {"i": _i}
    if _timeouts >= _MAX_TIMEOUTS:
        _emit({"i": _i, "status": "not run", "error": f"skipped: {_timeouts} earlier calls timed out"})
        continue
    try:
        signal.setitimer(signal.ITIMER_REAL, _CALL_S)
        _actual = eval(_call, _ns)
        # the value's own methods (repr, ==) run within the call's time too
        _row["actual"], _row["key"] = repr(_actual)[:500], _canon(_actual)[:2000]
        if _expected is None:
            _row["status"] = "ran"
        else:
            _row["status"] = "passed" if _same(_actual, eval(_expected, {})) else "failed"
        signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        _row["status"] = "timeout"
        _timeouts += 1
    except BaseException as e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _row.update(status="error", error=f"{type(e).__name__}: {e}"[:500], traceback=_tb(e))
    _row["stdout"] = _buf.getvalue()[:300]
    _emit(_row)
'''


@dataclass(frozen=True)
class CaseResult:
    """One call of the program: what it was asked, what it should give and what it did."""

    call: str
    expected: str | None
    status: Status
    actual: str | None = None
    error: str | None = None
    traceback: str | None = None
    stdout: str = ""
    key: str | None = None  # the value in canonical form, for grouping (see `ProgramRun.behaviour`)

    @property
    def visible(self) -> bool:
        return self.expected is not None

    def describe(self) -> str:
        """One line (a traceback after it when the call raised) for the Reviewer."""
        head = f"{self.call}"
        if self.status == "passed":
            return f"{head} returned {self.actual}, as expected"
        if self.status == "failed":
            return f"{head} returned {self.actual}; expected {self.expected}"
        if self.status == "timeout":
            return f"{head} timed out after {CALL_TIMEOUT_S:g} s (expected {self.expected})"
        if self.status == "not run":
            return f"{head} was not run: {self.error}"
        if (self.error or "").startswith("the program "):  # the run ended during this call
            text = f"{head}: {self.error} (expected {self.expected})"
        else:
            text = f"{head} raised {self.error} (expected {self.expected})"
        tail = _traceback_tail(self.traceback)
        return f"{text}\n  traceback:\n{tail}" if tail else text


@dataclass(frozen=True)
class ProgramRun:
    """A program's outcome on a question's examples and extra inputs."""

    program: str | None
    load: Literal["ok", "error", "timeout", "no program", "no examples"]
    cases: tuple[CaseResult, ...] = ()
    load_error: str | None = None
    load_traceback: str | None = None
    run_summary: str = ""  # the sandbox's status line

    @property
    def visible(self) -> list[CaseResult]:
        return [c for c in self.cases if c.visible]

    @property
    def passed(self) -> int:
        return sum(c.status == "passed" for c in self.visible)

    @property
    def pass_share(self) -> float | None:
        """The share of visible examples passed; None when the question has none."""
        visible = self.visible
        return self.passed / len(visible) if visible else None

    def behaviour(self) -> str | None:
        """A key equal for programs that behave alike on every case (the same value, or the same
        kind of failure), None for a program that does not load."""
        if self.load != "ok" and self.load != "no examples":
            return None
        if not self.cases:  # nothing to call it on: programs agree only when their code does
            return "code:" + hashlib.sha256(_code_form(self.program or "").encode()).hexdigest()[:16]
        outcome = [_case_outcome(c) for c in self.cases]
        return hashlib.sha256(json.dumps(outcome).encode()).hexdigest()[:16]

    def evidence(self) -> list[str]:
        """Lines for the Reviewer: the visible examples only (never hidden tests)."""
        if self.load == "no program":
            return ["the solution contains no ```python code block: nothing could be run"]
        if self.load in ("error", "timeout"):
            why = "timed out while loading" if self.load == "timeout" else f"failed to load: {self.load_error}"
            tail = _traceback_tail(self.load_traceback)
            return [f"the program {why}" + (f"\n  traceback:\n{tail}" if tail else "")]
        visible = self.visible
        if not visible:
            return ["the question shows no examples to run the program on"]
        lines = [f"ran the program on the {len(visible)} examples of the question: {self.passed} passed"]
        lines += [f"Example {i}: {c.describe()}" for i, c in enumerate(visible, 1)]
        return lines


def _case_outcome(case: CaseResult) -> list:
    """What a call did, for grouping: its value in canonical form (with what it printed when it
    returned None: a program that prints its answer), or the kind of failure."""
    if case.status not in ("passed", "failed", "ran"):
        return [case.status, (case.error or "").split(":")[0]]
    value = case.key if case.key is not None else case.actual
    return ["value", value, case.stdout if value == "None" else ""]


def _code_form(program: str) -> str:
    """The program's syntax tree (comments, blank lines and layout left out), else its text."""
    try:
        return ast.dump(ast.parse(textwrap.dedent(program)))
    except (SyntaxError, ValueError):
        return program.strip()


def _traceback_tail(traceback: str | None, lines: int = 4) -> str:
    if not traceback:
        return ""
    kept = [line for line in traceback.strip().splitlines()
            if line.strip() and set(line.strip()) - set("^~") and 'File "<string>"' not in line][-lines:]  # fmt: skip
    return "\n".join("    " + line.strip() for line in kept)


def _harness(program: str, entry: str, cases: list[Example], nonce: str) -> str:
    args = repr((nonce, entry, program, [(c.call, c.expected) for c in cases], CALL_TIMEOUT_S, LOAD_TIMEOUT_S,
                 MAX_TIMEOUTS))
    return _HARNESS.replace("{args}", args, 1)


def _parse(stdout: str, nonce: str) -> tuple[dict | None, dict[int, dict]]:
    load, rows = None, {}
    for line in stdout.splitlines():
        if not line.startswith(nonce):
            continue
        try:
            row = json.loads(line[len(nonce):])
        except json.JSONDecodeError:
            continue
        if "load" in row and load is None:
            load = row
        elif isinstance(row.get("i"), int) and row["i"] not in rows:
            rows[row["i"]] = row
    return load, rows


async def run_program(question: CodeQuestion, program: str | None) -> ProgramRun:
    """Run `program` on the question's visible examples and extra inputs in the sandbox."""
    if not program:
        return ProgramRun(program=None, load="no program")
    cases = list(question.examples) + extra_inputs(question)
    source = assemble(question.prompt, program, question.entry_point)
    nonce = "@@" + secrets.token_hex(8) + "@@"
    timeout = min(RUN_LIMIT_S, 2.0 + LOAD_TIMEOUT_S + CALL_TIMEOUT_S * max(1, len(cases)))
    result = await arun_python(_harness(source, question.entry_point, cases, nonce), timeout=timeout,
                               max_output_bytes=256_000)  # fmt: skip
    load, rows = _parse(result.stdout, nonce)
    summary = result.summary()
    if load is None:  # the sandbox run ended before the program was loaded
        status = "timeout" if result.timed_out else "error"
        return ProgramRun(program=program, load=status, load_error=summary,
                          load_traceback=result.stderr[-1500:], run_summary=summary)  # fmt: skip
    if load["load"] != "ok":
        return ProgramRun(program=program, load=load["load"], load_error=load.get("error"),
                          load_traceback=load.get("traceback"), run_summary=summary)  # fmt: skip
    out: list[CaseResult] = []
    stopped = False
    for i, case in enumerate(cases):
        row = rows.get(i)
        if row is not None:
            out.append(CaseResult(case.call, case.expected, row.get("status", "error"), actual=row.get("actual"),
                                  error=row.get("error"), traceback=row.get("traceback"),
                                  stdout=row.get("stdout") or "", key=row.get("key")))  # fmt: skip
        elif not stopped:  # the call during which the run ended
            stopped = True
            status = "timeout" if result.timed_out else "error"
            out.append(CaseResult(case.call, case.expected, status, error=f"the program {summary}",
                                  traceback=result.stderr[-1500:] or None))  # fmt: skip
        else:
            out.append(CaseResult(case.call, case.expected, "not run", error=f"the program {summary} earlier"))
    return ProgramRun(program=program, load="ok" if question.examples else "no examples",
                      cases=tuple(out), run_summary=summary)  # fmt: skip


class ProgramRuns:
    """Remembers outcomes per (question, program), so the reward, the Reviewer's evidence and the
    vote share one sandbox run; concurrent requests for the same pair share it too."""

    def __init__(self, size: int = MEMO_SIZE):
        self.size = size
        self._done: OrderedDict[str, ProgramRun] = OrderedDict()
        self._running: dict[tuple[int, str], asyncio.Future] = {}

    @staticmethod
    def _key(question: str, program: str | None) -> str:
        return hashlib.sha256(f"{question}\x1f{program}".encode()).hexdigest()

    async def get(self, question: str, program: str | None) -> ProgramRun | None:
        """The outcome of `program` on `question`, or None when the question is no code question."""
        parsed = parse_code_question(question)
        if parsed is None:
            return None
        key = self._key(question, program)
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        if slot in self._running:
            return await asyncio.shield(self._running[slot])
        future = loop.create_future()
        self._running[slot] = future
        try:
            run = await run_program(parsed, program)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._running.pop(slot, None)
        future.set_result(run)
        self._done[key] = run
        while len(self._done) > self.size:
            self._done.popitem(last=False)
        return run


#: The process-wide memo the reward, the evidence and the vote share.
PROGRAM_RUNS = ProgramRuns()


async def behaviour_keys(question: str, programs: list[str | None]) -> list[str | None]:
    """For each program, a key shared by the programs that behave alike on the question's
    examples and extra inputs (None for no program, or one that does not load)."""
    runs = await asyncio.gather(*(PROGRAM_RUNS.get(question, p) for p in programs))
    return [None if p is None or r is None else r.behaviour() for p, r in zip(programs, runs)]

"""Execution-based step verification: re-check a step's computable claims in the sandbox.

No model: the equations and Python blocks a step states (found by `_claims.extract`) are evaluated
by one small program per call in `magicore.tools.sandbox`, never in this process, and a step
whose claim does not hold scores low. Deterministic. docs/verifier.md gives the grammar and why
the scores are what they are. Imports only the standard library, pydantic and magicore.tools.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Union

from pydantic import BaseModel

from magicore.tools.errors import InputError
from magicore.tools.rewards._verifier_program import PROGRAM

MEMO_SIZE = 512  # chains whose step checks are remembered
from magicore.tools.rewards._claims import Equation, Number, Segment, extract
from magicore.tools.rewards.base import RewardModel
from magicore.tools.sandbox import arun_python
from magicore.tools.steps import bound_steps, split_steps

MAX_BITS = 4096  # numerator/denominator size past which a value is "too large to check"
CARRY_TOLERANCE = Fraction(1, 100)  # relative slack once a chain goes on from a rounded value


class ClaimCheck(BaseModel):
    """One claim of a step and what re-computing it showed. holds is None when it could not be
    decided (a timeout, a number too large, the sandbox unavailable)."""

    kind: Literal["arithmetic", "code"]
    text: str  # "9 * 2 = 19", or "python block"
    expression: str  # the Python evaluated: the left side, or the block's source
    left: str = ""  # the left side as written
    stated: str | None = None  # the right side as written
    computed: str | None = None  # the left side's value, or what the block printed
    holds: bool | None = None
    rounded: bool = False  # held only within the precision the text shows
    error: str | None = None

    def describe(self) -> str:
        """One line for a model: "16 - 3 - 4 = 9: holds" / "9 * 2 = 19: false, 9 * 2 is 18"."""
        if self.holds and self.kind == "code":
            out = (self.computed or "").strip()
            return "python block: ran without error" + (f", printed {out[:80]!r}" if out else "")
        if self.holds:
            return f"{self.text}: holds" + (" (rounded)" if self.rounded else "")
        why = self.error if self.computed is None or self.kind == "code" else (
            f"{self.left} is {self.computed}" + (f" and {self.error}" if self.error else ""))
        return f"{self.text}: {'false' if self.holds is False else 'not checked'}, {why}"


class StepCheck(BaseModel):
    """Every claim of one step, and the step's score."""

    index: int  # position of the step in its chain, from 0
    claims: list[ClaimCheck] = []
    score: float
    error: str | None = None  # the sandbox failed, so claims went unchecked

    def describe(self) -> str:
        """The claims' lines joined with "; " (each unchecked one says why), or "nothing to check"."""
        return "; ".join(c.describe() for c in self.claims) or "nothing to check"


@dataclass(frozen=True)
class Unavailable:
    reason: str
    undefined: bool = False  # no such value (division by zero): the claim is false


Value = Union[Fraction, float, Unavailable]


def judge(eq: Equation, values: dict[str, Value]) -> list[ClaimCheck]:
    """The claims of one equation, each link checked against the running value: in
    "2 + 3 = 5 + 4 = 9" the links "2 + 3 = 5" and "5 + 4 = 9"; in "3/4 * 8 = 24/4 = 6" both sides
    of each "=" are equal. An error is counted once: the chain goes on from what the text says.
    A link between two plain numbers claims nothing."""
    left, v = eq.segments[0], values[eq.segments[0].py]
    carried, out = False, []
    for seg, approx in zip(eq.segments[1:], eq.approx):
        w = values[seg.py]
        stated = seg.number
        if (stated is None and seg.lead is not None and _known(v, w) and not _same(v, w)
                and _matches(v, seg.lead, approx, carried)[0]):
            stated = seg.lead  # a continuation: "2 + 3 = 5 + 4" states 5, then goes on
        if left.number is None or stated is None:
            out.append(_link(left, v, seg, w, stated, approx, carried))
            carried = carried or bool(out[-1].holds and out[-1].rounded)
        left, v = seg, w
    return out


def _link(left: Segment, v: Value, seg: Segment, w: Value, stated: Number | None, approx: bool,
          carried: bool) -> ClaimCheck:
    right = stated.shown if stated is not None else seg.shown
    claim = ClaimCheck(kind="arithmetic", text=f"{left.shown} {'≈' if approx else '='} {right}",
                       expression=left.py, left=left.shown, stated=right)
    for x in (v,) if stated is not None else (v, w):
        if isinstance(x, Unavailable):
            claim.holds, claim.error = (False if x.undefined else None), x.reason
            return claim
    claim.computed = _show(v)
    if stated is not None:
        claim.holds, claim.rounded = _matches(v, stated, approx, carried)
    else:
        claim.holds = _same(v, w, slack=CARRY_TOLERANCE if approx or carried else 0)
        claim.error = None if claim.holds else f"{seg.shown} is {_show(w)}"
    return claim


def _known(*xs: Value) -> bool:
    return not any(isinstance(x, Unavailable) for x in xs)


def _same(a: Fraction | float, b: Fraction | float, slack: Fraction | int = 0) -> bool:
    """Equal, up to float noise when a side went through a float, or up to a relative slack."""
    x, y = Fraction(a), Fraction(b)
    noise = Fraction(1, 10**9) if isinstance(a, float) or isinstance(b, float) else 0
    return abs(x - y) <= (noise + slack) * max(abs(x), abs(y), 1 if noise else 0)


def _matches(v: Fraction | float, n: Number, approx: bool, carried: bool) -> tuple[bool, bool]:
    """Whether the computed `v` matches a stated number, and whether only by rounding.

    Within the precision shown: "10/3 = 3.33" holds (rounded or truncated to 2 decimals), and so
    does "10/3 ≈ 3"; an integer written with "=" must be exact. "25%" may mean 0.25 or 25."""
    stated = Fraction(n.value)
    for s, d in ((stated / 100, n.decimals + 2), (stated, n.decimals)) if n.percent else ((stated, n.decimals),):
        if _same(v, s):
            return True, False
        unit, x = Fraction(1, 10**d), Fraction(v)
        if (d > 0 or approx) and (abs(x - s) <= unit / 2 or math.trunc(x / unit) * unit == s):
            return True, True
        if carried and _same(v, s, slack=CARRY_TOLERANCE):
            return True, True
    return False, False


def _show(x: Fraction | float) -> str:
    if isinstance(x, Fraction) and x.denominator == 1 and abs(x) < 10**30:
        return str(x.numerator)
    try:
        return f"{float(x):.10g}"
    except OverflowError:
        return "a number too large to show"


def _value(raw: dict) -> Value:
    if "n" in raw:
        return Fraction(int(raw["n"]), int(raw["d"]))
    if "f" in raw:
        return float(raw["f"])
    return Unavailable(str(raw.get("e", "not evaluated")), bool(raw.get("undefined")))


def _code_check(source: str, raw: dict | None, problem: str | None) -> ClaimCheck:
    """Exit 0 holds; an exception is false, except NameError/ImportError (the block needs
    something defined elsewhere); a timeout or a kill decides nothing."""
    claim = ClaimCheck(kind="code", text="python block", expression=source)
    raw = raw or {"error": f"not run: {problem or 'no result'}"}
    last = ((raw.get("stderr") or "").strip().splitlines() or [""])[-1][:200]
    if "error" in raw:
        claim.error = raw["error"]
    elif raw.get("timed_out"):
        claim.error = "timed out (it may be slow rather than wrong)"
    elif raw.get("exit") == 0:
        claim.holds, claim.computed = True, raw.get("stdout")
    elif raw.get("exit") is None:
        claim.error = f"killed by signal {raw.get('signal')}"
    elif last.startswith(("NameError", "ImportError", "ModuleNotFoundError")):
        claim.error = f"depends on code outside the block: {last}"
    else:
        claim.holds, claim.error = False, last or f"exited with code {raw.get('exit')}"
    return claim




class ExecutionVerifier(RewardModel):
    """A PRM/ORM backend that re-computes what steps claim instead of asking a model.

    A step whose checkable claims all hold scores `verified_score`; one with a claim that does
    not hold, `falsified_score`; one with nothing checkable, `neutral`: 0.9 by default, not 0.5,
    because R multiplies step scores (0.5 would halve a chain's reward for every sentence of
    prose, and the Reviewer would see 5/10 on steps nobody found wrong), yet below
    verified_score, so a checked step counts for more than an unchecked one. See `outcome` for
    the whole-solution score. Code blocks run with `code_timeout` seconds each, `parallel` at once.
    """

    name = "verifier"

    def __init__(self, *, verified_score: float = 0.95, falsified_score: float = 0.05,
                 neutral: float = 0.9, neutral_outcome: float = 0.5, check_code: bool = True,
                 code_timeout: float = 3.0, parallel: int = 4, memory_mb: int = 512) -> None:
        if not 0.0 <= falsified_score <= neutral <= verified_score <= 1.0 or not 0.0 <= neutral_outcome <= 1.0:
            raise InputError("The verifier's scores must satisfy 0 <= falsified_score <= neutral <= "
                             "verified_score <= 1, and neutral_outcome must lie in [0, 1].")
        if not (code_timeout > 0 and parallel >= 1):
            raise InputError("The verifier needs a positive code_timeout and parallel >= 1.")
        self.verified_score, self.falsified_score = float(verified_score), float(falsified_score)
        self.neutral, self.neutral_outcome = float(neutral), float(neutral_outcome)
        self.check_code, self.code_timeout = check_code, float(code_timeout)
        self.parallel, self.memory_mb = int(parallel), int(memory_mb)
        # Step checks by steps: scoring a chain asks for its steps and then for its outcome (the
        # same steps, split again), often at once; one sandbox run answers both.
        self._memo: OrderedDict[tuple[str, ...], asyncio.Future] = OrderedDict()

    async def averify_chains(self, question: str, chains: Sequence[Sequence[str]]) -> list[list[StepCheck]]:
        """Checks for every step of every chain, with one sandbox run for the whole batch."""
        parsed = [[extract(step, code=self.check_code) for step in steps] for steps in chains]
        steps = [st for chain in parsed for st in chain]
        expressions = list(dict.fromkeys(s.py for st in steps for eq in st.equations for s in eq.segments))
        blocks = list(dict.fromkeys(b for st in steps for b in st.code))
        values, runs, problem = await self._run(expressions, blocks)
        block_ids = {b: i for i, b in enumerate(blocks)}
        missing = Unavailable(problem or "no result")
        lookup = dict(zip(expressions, values or []))
        out = []
        for chain in parsed:
            out.append([])
            for index, step in enumerate(chain):
                claims = [c for eq in step.equations
                          for c in judge(eq, {s.py: lookup.get(s.py, missing) for s in eq.segments})]
                claims += [_code_check(b, runs.get(block_ids[b]), problem) for b in step.code]
                failed = problem if problem and any(c.holds is None for c in claims) else None
                out[-1].append(StepCheck(index=index, claims=claims, score=self._score(claims), error=failed))
        return out

    async def averify_steps(self, question: str, steps: Sequence[str]) -> list[StepCheck]:
        key, loop = tuple(steps), asyncio.get_running_loop()
        task = self._memo.get(key)
        if task is None or (not task.done() and task.get_loop() is not loop) or task.cancelled():
            task = loop.create_task(self.averify_chains(question, [steps]))
            task.add_done_callback(lambda done, key=key: self._forget_failures(key, done))
            self._memo[key] = task
            while len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        return list((await asyncio.shield(task))[0])

    async def aprepare(self, question: str, chains: Sequence[Sequence[str]]) -> None:
        """Check every chain not yet remembered in one sandbox run, and remember the results."""
        missing = list({tuple(steps): None for steps in chains if tuple(steps) not in self._memo})
        if not missing:
            return
        results = await self.averify_chains(question, missing)
        loop = asyncio.get_running_loop()
        for key, checks in zip(missing, results):
            if not any(c.error for c in checks):
                done = loop.create_future()
                done.set_result([checks])
                self._memo[key] = done
        while len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)

    def _forget_failures(self, key: tuple[str, ...], task: asyncio.Task) -> None:
        """A sandbox failure may pass: only successful checks are remembered."""
        failed = task.cancelled() or task.exception() is not None or any(c.error for c in task.result()[0])
        if failed and self._memo.get(key) is task:
            del self._memo[key]

    async def ascore_steps_batch(self, question: str, chains: Sequence[Sequence[str]]) -> list[list[float]]:
        """Step scores of several chains from one sandbox run (not one run per chain)."""
        return [[c.score for c in checks] for checks in await self.averify_chains(question, chains)]

    async def ascore_steps(self, question: str, steps: Sequence[str]) -> list[float]:
        return [c.score for c in await self.averify_steps(question, steps)]

    async def ascore_outcome(self, question: str, solution: str) -> float:
        return self.outcome(await self.averify_steps(question, bound_steps(split_steps(solution))[0]))

    def outcome(self, checks: Sequence[StepCheck]) -> float:
        """The share of decided claims that hold, mapped linearly onto [falsified_score,
        verified_score]; `neutral_outcome` (0.5: R adds it, so "no information") when none was."""
        decided = [c.holds for step in checks for c in step.claims if c.holds is not None]
        if not decided:
            return self.neutral_outcome
        return self.falsified_score + (self.verified_score - self.falsified_score) * sum(decided) / len(decided)

    def _score(self, claims: Sequence[ClaimCheck]) -> float:
        decided = [c.holds for c in claims if c.holds is not None]
        if not decided:
            return self.neutral
        return self.verified_score if all(decided) else self.falsified_score

    async def _run(self, expressions: list[str], blocks: list[str]) -> tuple[list[Value] | None, dict, str | None]:
        """Values of the expressions, block results by index, and what went wrong, if anything."""
        if not expressions and not blocks:
            return [], {}, None
        mark = secrets.token_hex(8)
        job = json.dumps({"mark": mark, "max_bits": MAX_BITS, "expressions": expressions, "code": blocks,
                          "timeout": self.code_timeout, "parallel": self.parallel})
        waves = -(-len(blocks) // self.parallel)
        try:
            res = await arun_python(PROGRAM, stdin=job, timeout=10.0 + waves * (self.code_timeout + 1.0),
                                    memory_mb=self.memory_mb, max_processes=4 * self.parallel + 4,
                                    max_output_bytes=100_000 + 3_000 * len(expressions) + 8_000 * len(blocks))
        except Exception as e:  # noqa: BLE001 - a sandbox that cannot start must not stop scoring
            return None, {}, f"sandbox unavailable: {e}"
        values, runs = None, {}
        for line in res.stdout.splitlines():
            try:
                obj = json.loads(line[len(mark):]) if line.startswith(mark) else {}
            except ValueError:
                continue
            if "values" in obj and len(obj["values"]) == len(expressions):
                values = [_value(raw) for raw in obj["values"]]
            elif isinstance(obj.get("block"), int):
                runs[obj["block"]] = obj
        if res.ok and values is not None:
            return values, runs, None
        return values, runs, f"checking program {res.summary() if not res.ok else 'gave no result'}"

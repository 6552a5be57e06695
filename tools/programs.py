"""Code tasks: the program a solution states, and the visible examples of a function's prompt.

A code question is a Python function signature with a docstring (HumanEval's format). Its
visible examples are the docstring's `>>> f(x)` lines with the expected output on the next line,
or lines such as `f(x) ==> y`, `f(x) ➞ y`, `f(x) == y` or `f(x) should return y`. Hidden tests
are never part of a question. Extra inputs, drawn from the examples' arguments, let programs be
grouped by behaviour. Pure parsing, no execution: tools/code_runner.py runs programs.
Imports only the standard library.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
import textwrap
from dataclasses import dataclass

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_DEF = re.compile(r"(?m)^[ \t]*def[ \t]+([A-Za-z_]\w*)[ \t]*\(")
_SEPARATOR = re.compile(r"\s*(?:==>|=>|➞|->|==|=|\bshould\s+return\b|\breturns?\b)\s*")
_LEAD = re.compile(r"^(?:[*\-•]\s+|for\s+|example:?\s+)", re.IGNORECASE)
_FOR_VALUE = re.compile(r"^for\s+\w+\s*=\s*(?P<value>.+?),?\s+the\s+output\s+should\s+be\s+(?P<expected>.+?)\.?$",
                        re.IGNORECASE)  # fmt: skip

#: Extra inputs drawn per question at most (the visible examples come first).
MAX_EXTRA_INPUTS = 8


@dataclass(frozen=True)
class Example:
    """One call of the function and, for a visible example, its expected value (Python source)."""

    call: str  # e.g. "add(2, 3)"
    expected: str | None = None  # e.g. "5"; None for an extra input (no expected value)


@dataclass(frozen=True)
class CodeQuestion:
    """What a code question asks for: the function's name and its visible examples."""

    entry_point: str
    prompt: str
    examples: tuple[Example, ...]


def looks_like_code_question(question: str) -> bool:
    """A function definition with a docstring: the code task family."""
    return bool(_DEF.search(question)) and ('"""' in question or "'''" in question)


def entry_point_of(question: str) -> str | None:
    """The name of the last function the question defines (helpers come first in HumanEval)."""
    names = _DEF.findall(question)
    return names[-1] if names else None


def parse_code_question(question: str, entry_point: str | None = None) -> CodeQuestion | None:
    """The entry point and visible examples of a code question; None when it defines no function."""
    entry = entry_point or entry_point_of(question)
    if not entry:
        return None
    return CodeQuestion(entry_point=entry, prompt=question, examples=tuple(visible_examples(question, entry)))


def _is_call_of(source: str, name: str) -> bool:
    """A call of `name` whose arguments are all literals: `f(3, [1, 2])`, not a formula `f(n-1)`."""
    try:
        node = ast.parse(source.strip(), mode="eval").body
    except SyntaxError:
        return False
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name):
        return False
    return all(_literal(a) for a in [*node.args, *(k.value for k in node.keywords)])


def _literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _is_expression(source: str) -> bool:
    """An expected value: a Python literal (a formula or prose is no example)."""
    try:
        return _literal(ast.parse(source.strip(), mode="eval").body)
    except (SyntaxError, MemoryError, RecursionError):
        return False


def visible_examples(question: str, entry_point: str) -> list[Example]:
    """The docstring's examples of calls to `entry_point` that state an expected value."""
    lines = question.splitlines()
    found: list[Example] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip().removeprefix('"""').removeprefix("'''").strip()
        if line.startswith(">>>"):
            call = line[3:].strip()
            stated = [] if _is_call_of(call, entry_point) else _stated(call, entry_point)
            if stated:  # ">>> f(x) == y": the line states its own expected value
                found.extend(stated)
                i += 1
                continue
            expected_lines = []
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].strip().startswith(">>>") \
                    and not lines[j].strip().startswith(('"""', "'''")):  # fmt: skip
                expected_lines.append(lines[j].strip())
                j += 1
            expected = " ".join(expected_lines)
            if _is_call_of(call, entry_point) and expected and _is_expression(expected):
                found.append(Example(call, expected))
            i = j
            continue
        found.extend(_stated(line, entry_point))
        m = _FOR_VALUE.match(line)
        if m and _single_parameter(question, entry_point) and _is_expression(m["value"]) \
                and _is_expression(m["expected"]):  # fmt: skip
            found.append(Example(f"{entry_point}({m['value'].strip()})", m["expected"].strip()))
        i += 1
    unique = list(dict.fromkeys(found))
    return unique


def _stated(line: str, entry_point: str) -> list[Example]:
    """An example written as `f(x) ==> y`, `f(x) = y`, `f(x) ➞ y`, `f(x) should return y`...:
    the first split where the left side is a call of the function and the right an expression."""
    line = _LEAD.sub("", line.strip()).rstrip(".").strip()
    if not line.startswith(entry_point):
        return []
    for m in _SEPARATOR.finditer(line):
        left, right = line[: m.start()], line[m.end():]
        if _is_call_of(left, entry_point) and right.strip() and _is_expression(right):
            return [Example(left.strip(), right.strip())]
    return []


def _single_parameter(question: str, entry_point: str) -> bool:
    try:
        tree = ast.parse(question + "\n    pass\n")
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            return len(node.args.args) == 1
    return False


def extract_program(text: str | None) -> str | None:
    """The program a solution states: its last fenced code block (``` or ```python) that defines
    a function, else its last code block; None when it has none. Blocks tagged as another
    language are skipped, and so is a usage or output block after the solution
    (```print(f(2))```, ```5```)."""
    if not text:
        return None
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    blocks = [body for lang, body in blocks if lang in ("", "python", "py", "python3")]
    blocks = [b.strip("\n") for b in blocks if b.strip()]
    defining = [b for b in blocks if _DEF.search(b)]
    return (defining or blocks or [None])[-1]


def assemble(question: str, program: str, entry_point: str) -> str:
    """The program to run: the solution's code, preceded by the question's own code (imports and
    helper functions) when the solution defines only the entry point's body or leaves them out.

    A solution that omits the `def` line (a bare body) is indented under the question's
    signature, as HumanEval's completions are.
    """
    if re.search(rf"(?m)^[ \t]*def[ \t]+{re.escape(entry_point)}[ \t]*\(", program):
        return f"{_prelude(question, entry_point)}\n{program}".strip("\n") + "\n"
    body = "\n".join("    " + line if line.strip() else line for line in textwrap.dedent(program).splitlines())
    return f"{question.rstrip()}\n{body}\n"


def _prelude(question: str, entry_point: str) -> str:
    """The question's source before the entry point's `def` (imports, helper functions)."""
    m = re.search(rf"(?m)^[ \t]*def[ \t]+{re.escape(entry_point)}[ \t]*\(", question)
    return question[: m.start()].rstrip() if m else ""


# ------------------------------------------------------------------------------ extra inputs


def _variants(value, rng: random.Random) -> list:
    """Nearby values of the same type as `value`."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, -value, 0, value * 2]
    if isinstance(value, float):
        return [value * 2, -value, 0.0, value + 0.5]
    if isinstance(value, str):
        return [value[::-1], "", value.upper(), value + value[:1], value[1:]]
    if isinstance(value, (list, tuple)):
        kind = type(value)
        items = list(value)
        out = [kind(items[::-1]), kind(), kind(items[1:]), kind(items + items[:1])]
        if items:
            shuffled = items[:]
            rng.shuffle(shuffled)
            out.append(kind(shuffled))
        return out
    return []


def extra_inputs(question: CodeQuestion, limit: int = MAX_EXTRA_INPUTS) -> list[Example]:
    """Calls with one argument of a visible example changed to a nearby value of the same type,
    drawn deterministically (seeded by the question), without expected values. They separate
    programs that agree on the examples but not elsewhere."""
    seed = int.from_bytes(hashlib.sha256(question.prompt.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    candidates: list[str] = []
    for example in question.examples:
        call = ast.parse(example.call, mode="eval").body
        try:
            args = [ast.literal_eval(a) for a in call.args]
        except (ValueError, SyntaxError, TypeError):
            continue  # an argument that is not a literal: nothing to vary
        if call.keywords:
            continue
        for position, value in enumerate(args):
            for variant in _variants(value, rng):
                changed = list(args)
                changed[position] = variant
                candidates.append(f"{question.entry_point}({', '.join(repr(a) for a in changed)})")
    seen = {e.call for e in question.examples}
    unique = [c for c in dict.fromkeys(candidates) if c not in seen]
    rng.shuffle(unique)
    return [Example(c) for c in unique[:limit]]

"""Finding the claims in a reasoning step that can be computed: equations and Python blocks.

Nothing here evaluates model text. An equation ("48/2 = 24 clips", "\\frac{3}{4} \\times 8 = 6",
"<<9*2=18>>", "20% of 50 is 10") becomes a chain of segments, each a plain arithmetic Python
string that the verifier evaluates in the sandbox; the verifier compares the values that come
back. The grammar is in docs/verifier.md. Imports only the standard library.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

MAX_EXPRESSION = 300  # characters of Python per segment; longer ones are not checked
MAX_CODE = 20_000  # characters per code block

_TOKEN = re.compile(r"""
    (?P<date>\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?!\d)|(?<!\d)\d{1,2}/\d{1,2}/\d{4}(?!\d)|\d+(?::\d+)+)
  | (?P<num>(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?|\.\d+)
  | (?P<op>\*\*|//|[-+*/^×÷·⋅∙−–])
  | (?P<eq>==?|≈) | (?P<pct>%) | (?P<lp>[(\[]) | (?P<rp>[)\]]) | (?P<cur>[$€£¥])
  | (?P<word>[^\W\d_]+) | (?P<space>\s+) | (?P<other>.)""", re.X | re.S)
_MATH = ("num", "op", "eq", "pct", "lp", "rp")  # token kinds an equation is made of
_PY_OP = {"^": "**", "×": "*", "÷": "/", "·": "*", "⋅": "*", "∙": "*", "−": "-", "–": "-"}
# Words that act as arithmetic between numbers: (kind, Python). "scale" words stand for a number
# followed by "*": "half of 48" is (1/2) * 48, "twice 12" is 2 * 12.
_PHRASES = {
    ("multiplied", "by"): ("op", "*"), ("divided", "by"): ("op", "/"), ("times",): ("op", "*"),
    ("x",): ("op", "*"), ("plus",): ("op", "+"), ("minus",): ("op", "-"),
    ("is", "equal", "to"): ("eq", "="), ("equals",): ("eq", "="), ("is",): ("eq", "="),
    ("half", "of"): ("scale", "(1/2)"), ("a", "third", "of"): ("scale", "(1/3)"),
    ("a", "quarter", "of"): ("scale", "(1/4)"), ("twice",): ("scale", "2"),
    ("double",): ("scale", "2"), ("triple",): ("scale", "3"), ("of",): ("of", "*")}
_ARITH_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
                ast.FloorDiv, ast.Mod, ast.Pow, ast.UAdd, ast.USub)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_ANNOTATION = re.compile(r"<<([^<>\n]{1,300})>>")
_BOLD = re.compile(r"(?<![\w)\]*])\*\*(?=\S)(.{1,200}?)(?<=\S)\*\*(?![\w(\[*])")
_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{([^{}]*)\}|(\d))\s*(?:\{([^{}]*)\}|(\d))")
_POWER = re.compile(r"\^\s*\{([^{}]*)\}")  # 2^{10}: braces inside \frac arguments
_LATEX = [(re.compile(p), r) for p, r in [
    (r"\\(?:text|mathrm|textbf|mathbf|textrm|mbox|operatorname)\s*\{([^{}]*)\}", r" \1 "),
    (r"\\(?:left|right|displaystyle|boxed)(?![A-Za-z])", ""), (r"\\\$", "$"), (r"\\%", "%"),
    (r"(?<=\d)\\,(?=\d{3}(?!\d))", ","), (r"\{,\}", ","), (r"\\\\", "\n"), (r"\\[,;:! ]", " "),
    (r"\\[()\[\]]", " "), (r"\\times(?![A-Za-z])", "×"), (r"\\c?dot(?![A-Za-z])", "·"),
    (r"\\div(?![A-Za-z])", "÷"), (r"\\approx(?![A-Za-z])", "≈"), (r"&", " "),
    (r"\\([A-Za-z]+)", r"\1"), (r"\{", "("), (r"\}", ")")]]


@dataclass
class _Tok:
    kind: str  # num op eq pct lp rp word other date
    text: str  # as written; "" hides it from the claim's text
    start: int = 0
    glued: bool = False  # no space between this token and the one before
    py: str = ""
    word_num: bool = False  # a number written as a word: "half", "twice"
    percent: bool = False  # a "%" that means /100 (not modulo)


@dataclass(frozen=True)
class Number:
    """A number as the text states it: "3.33" has 2 decimals; "25%" is a percentage."""
    value: str  # parsable by fractions.Fraction, e.g. "-3.33"
    decimals: int
    percent: bool
    shown: str


@dataclass(frozen=True)
class Segment:
    """The text between two "=" of an equation."""
    py: str  # plain arithmetic Python
    shown: str  # as written, spacing normalised
    number: Number | None  # set when the segment is just a number
    lead: Number | None  # set when it starts "number op ...": "5 + 4" may continue a chain


@dataclass(frozen=True)
class Equation:
    start: int  # offset in the step, for ordering
    segments: tuple[Segment, ...]
    approx: tuple[bool, ...]  # per "=": written "≈" (a rounded claim)


@dataclass(frozen=True)
class StepClaims:
    equations: tuple[Equation, ...] = ()
    code: tuple[str, ...] = ()


def extract(step: str, *, code: bool = True) -> StepClaims:
    """The equations and (when `code`) the Python blocks a step states, in order, without
    repeats (GSM8K's "48/2 = <<48/2=24>>24" states one claim)."""
    blocks: list[str] = []

    def fence(m: re.Match) -> str:  # a block that is not a program is read as text
        lang, body = m.group(1).lower(), m.group(2)
        if code and lang in ("python", "py", "python3", "") and _is_program(body, labelled=bool(lang)):
            blocks.append(body)
            return "\n"
        return f"\n{body}\n"

    text = _plain(_FENCE.sub(fence, step))
    found = [eq for m in _ANNOTATION.finditer(text) for eq in _equations(m.group(1), m.start())]
    found += _equations(_ANNOTATION.sub(lambda m: " " * len(m.group(0)), text))
    unique: dict[tuple[str, ...], Equation] = {}
    for eq in sorted(found, key=lambda e: e.start):
        unique.setdefault(tuple(s.py for s in eq.segments), eq)
    return StepClaims(tuple(unique.values()), tuple(blocks))


def _is_program(body: str, *, labelled: bool) -> bool:
    """A labelled block is run when it parses; an unlabelled one only if it also prints or asserts.
    One that does not compile is read as text instead (parsed here, never run)."""
    try:
        return 0 < len(body.strip()) and len(body) <= MAX_CODE and bool(ast.parse(body)) and (
            labelled or "print(" in body or "assert" in body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def _plain(text: str) -> str:
    """Markdown bold and LaTeX as plain arithmetic: \\frac{a}{b} as (a/b), innermost first;
    unknown commands become words, so "\\sqrt{16} + 1 = 5" reads as a function and is skipped."""
    text = _POWER.sub(r"^(\1)", _BOLD.sub(r"\1", text))
    while (new := _FRAC.sub(lambda m: f"({_arg(m[1], m[2])}/{_arg(m[3], m[4])})", text)) != text:
        text = new
    for pattern, repl in _LATEX:
        text = pattern.sub(repl, text)
    return text


def _arg(braced: str | None, digit: str | None) -> str:
    x = (braced if braced is not None else digit or "").strip()
    return x if re.fullmatch(r"[\d.,]+", x) else f"({x})"


def _lex(text: str) -> list[_Tok]:
    toks, glued = [], False
    for m in _TOKEN.finditer(text):
        kind, s = m.lastgroup, m.group()
        if kind in ("space", "cur"):  # "$9 * $2" reads as "9 * 2"
            glued = glued and kind == "cur"
            continue
        toks.append(_Tok(kind, s, m.start(), glued, {"op": _PY_OP.get(s, s), "eq": "="}.get(kind, "")))
        glued = True
    return _percents(_words(toks))


def _at(toks: list[_Tok], i: int) -> _Tok | None:
    return toks[i] if 0 <= i < len(toks) else None


def _ends(t: _Tok | None) -> bool:
    return t is not None and t.kind in ("num", "rp", "pct")


def _starts(t: _Tok | None, minus: bool = False) -> bool:
    return t is not None and (t.kind in ("num", "lp") or (minus and t.kind == "op" and t.py == "-"))


def _words(toks: list[_Tok]) -> list[_Tok]:
    """Arithmetic words become tokens, but only between numbers: "3 times 4 is 12" does, while
    "x = 5" and "the answer is" do not."""
    out, i = [], 0
    while (t := _at(toks, i)) is not None:
        for n in (3, 2, 1):
            words = tuple(w.text.lower() for w in toks[i:i + n] if w.kind == "word")
            kind, py = _PHRASES.get(words, (None, "")) if len(words) == n else (None, "")
            prev, nxt, before = _at(out, len(out) - 1), _at(toks, i + n), _at(out, len(out) - 2)
            ok = {"op": _ends(prev) and _starts(nxt), "eq": _ends(prev) and _starts(nxt, minus=True),
                  "scale": not _ends(prev) and _starts(nxt),
                  "of": _starts(nxt) and prev is not None and (prev.kind == "pct" or (
                      prev.kind == "num" and before is not None and before.py == "/"))}.get(kind, False)
            if ok:
                shown = " ".join(w.text for w in toks[i:i + n])
                if kind == "scale":
                    num, _, of = shown.rpartition(" ") if words[-1] == "of" else (shown, "", "")
                    out += [_Tok("num", num, t.start, py=py, word_num=True), _Tok("op", of, t.start, py="*")]
                else:
                    out.append(_Tok("eq" if kind == "eq" else "op", shown, t.start, py=py))
                i += n
                break
        else:
            out.append(t)
            i += 1
    return out


def _percents(toks: list[_Tok]) -> list[_Tok]:
    """"20%" is 20/100 unless a number follows ("17 % 5" is modulo); a stray "%" breaks a run."""
    for i, t in enumerate(toks):
        if t.kind == "pct":
            prev = _at(toks, i - 1)
            if prev is None or prev.kind != "num" or prev.word_num:
                t.kind = "other"
            elif _starts(_at(toks, i + 1)):
                t.kind, t.py = "op", "%"
            else:
                t.percent = True
    return toks


def _equations(text: str, offset: int = 0) -> list[Equation]:
    toks, out, i = _lex(text), [], 0
    while i < len(toks):
        j = next((k for k in range(i, len(toks)) if toks[k].kind not in _MATH), len(toks))
        if j > i and (eq := _equation(toks[i:j], _at(toks, i - 1), _at(toks, j), offset)):
            out.append(eq)
        i = j + 1
    return out


def _equation(run: list[_Tok], before: _Tok | None, after: _Tok | None, offset: int) -> Equation | None:
    """A run of arithmetic tokens as an equation, or None when it is not a claim: no "=", a
    variable next to it ("2x + 3 = 11", "x - 3 = 2", "f(3) = 9", "= 5x"), a remainder
    ("7 / 2 = 3 remainder 1"), or malformed."""
    if not run or (before is not None and before.kind == "word" and run[0].glued) or (after is not None and (
            after.text.lower() in ("remainder", "r", "rem") or after.kind == "word" and after.glued and len(after.text) == 1)):
        return None
    lead_eq, start = run[0].kind == "eq", offset + run[0].start
    while run and run[0].kind in ("eq", "rp"):
        run.pop(0)
    while run and run[-1].kind in ("eq", "lp"):
        run.pop()
    if not run or run[-1].kind == "op" or not any(t.kind == "eq" for t in run):
        return None
    if run[0].kind == "op" and not (run[0].py == "-" and (lead_eq or before is None or before.kind != "word")):
        return None
    parts: list[list[_Tok]] = [[]]
    for t in run:
        if t.kind == "eq":
            parts.append([])
        else:
            parts[-1].append(t)
    eqs = [t for t in run if t.kind == "eq"]
    if eqs[0].text.isalpha() and len(parts[0]) == 1 and parts[0][0].kind == "num":
        parts, eqs = parts[1:], eqs[1:]  # "in class 3 is 25% of 120": a label, not a claim
    for part, opener, closer, end in ((parts[0], "lp", "rp", 0), (parts[-1], "rp", "lp", -1)):
        while part and part[end].kind == opener and sum(t.kind == opener for t in part) > sum(
                t.kind == closer for t in part):
            part.pop(end)  # "(5 + 3 = 8)": the parentheses wrap the whole equation
    segments = [_segment(p) for p in parts]
    if len(segments) < 2 or any(s is None for s in segments):
        return None
    return Equation(start, tuple(segments), tuple(t.text == "≈" for t in eqs))


def _segment(toks: list[_Tok]) -> Segment | None:
    py, shown = [], ""
    for i, t in enumerate(toks):
        prev, after = _at(toks, i - 1), _at(toks, i + 2)
        if prev is not None and t.py in ("+", "-") and prev.percent != bool(after and after.percent):
            return None  # "100 - 20% = 80" means 20% off, not 100 - 0.2: ambiguous, not a claim
        if prev is not None and ((prev.kind in ("num", "rp") or prev.percent) and t.kind == "lp"
                                 or prev.kind == "rp" and t.kind == "num"):
            py.append("*")  # implied multiplication: 2(3 + 4), (1 + 2)(3 + 4)
        if t.kind == "num":
            py.append(t.py if t.word_num else _py_number(t.text))
        elif t.percent:
            py[-1] = f"({py[-1]} / 100)"
        else:
            py.append({"lp": "(", "rp": ")"}.get(t.kind, t.py))
        shown += t.text if t.glued or not shown or not t.text else " " + t.text  # spacing as written
    source = " ".join(py).replace("( ", "(").replace(" )", ")")
    if not source or not _is_arithmetic(source):
        return None
    lead = _number(toks[:1]) if len(toks) > 2 and toks[1].kind == "op" else None
    return Segment(source, shown.strip(), _number(toks), lead)


def _number(toks: list[_Tok]) -> Number | None:
    """The number a segment states when it is only a number: "24", "-3.5", "25%", "(24)"."""
    while len(toks) > 2 and toks[0].kind == "lp" and toks[-1].kind == "rp":
        toks = toks[1:-1]
    neg = len(toks) > 1 and toks[0].py == "-"
    toks = toks[1:] if neg else toks
    pct = len(toks) == 2 and toks[1].percent
    if not toks or toks[0].kind != "num" or toks[0].word_num or len(toks) != 1 + pct:
        return None
    sign, text = "-" if neg else "", toks[0].text
    return Number(sign + _py_number(text), len(text.partition(".")[2]), pct, sign + text + "%" * pct)


def _py_number(text: str) -> str:
    whole, dot, frac = text.replace(",", "").partition(".")
    return str(int(whole or "0")) + dot + frac


def _is_arithmetic(source: str) -> bool:
    """Parses (never evaluates) and holds only numbers, + - * / // % ** and parentheses."""
    try:
        tree = ast.parse(source, mode="eval") if len(source) <= MAX_EXPRESSION else None
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return tree is not None and all(isinstance(n, _ARITH_NODES) or (isinstance(n, ast.Constant) and type(n.value) in (int, float))
               for n in ast.walk(tree))

"""Final-answer extraction and answer equivalence.

`extract_answer` finds the final answer in a model's free text (never JSON): the last
`\\boxed{...}` (nested braces allowed), else "The answer is ...", "Answer: ...", `#### 42`, a
multiple-choice letter, else the last number. Echoed score annotations ("(Score: 3/10)") are
never answers, a negated phrase ("the answer is not 12") states none, and the last-number
fallback skips bracketed notes in words. `answers_match` decides whether two answers are
the same: numbers with commas, units, percent and dollar signs are compared as numbers (with a
tolerance for decimals rounded to two or more places), letters as letters, and anything else by
math-verify. Imports nothing from agents/graphs.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction
from functools import lru_cache

#: Answers longer than this are not handed to math-verify (sympy can take very long on them).
MAX_SYMBOLIC_CHARS = 300

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_BARE_RE = re.compile(r"\\boxed\s+([^\s$]+)")
_HASH_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*([^\n]+)", re.IGNORECASE
)
_STEP_LABEL_RE = re.compile(r"^\s*(?:(?:\*\*)?step\s+\d+(?:\*\*)?\s*[:.)]|\d+[.)](?=\s))", re.IGNORECASE | re.MULTILINE)
_NUMBER_RE = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_LETTER_RE = re.compile(r"^\(?([A-Ja-j])\)?[.):]?$")
_LETTER_IN_TEXT_RE = re.compile(r"\(([A-J])\)|\b([A-J])\)|^([A-J])[.:]\s", re.MULTILINE)
#: "The answer is not 12, ...": a negated answer phrase states what the answer is not.
_NEGATED_RE = re.compile(r"^(?:not|n't|never)\b", re.IGNORECASE)
#: A score annotation the Reviewer's prompt shows and a model may echo: "(Score: 3/10)".
_SCORE_NOTE_RE = re.compile(r"\(\s*score\s*:?\s*\d+(?:\.\d+)?\s*/\s*10\s*\)", re.IGNORECASE)
#: A bracketed note in words, "(Note: 3 were broken)", "[checked in step 2]": no answer in it.
_WORDY_NOTE_RE = re.compile(
    r"\((?=[^()]*?(?<![\\A-Za-z])[A-Za-z]{2,})[^()]*\)|\[(?=[^\[\]]*?(?<![\\A-Za-z])[A-Za-z]{2,})[^\[\]]*\]"
)  # a word is 2+ letters not part of a LaTeX command


def _boxed_contents(text: str) -> list[str]:
    """Contents of every `\\boxed{...}` in order, matching nested braces by hand.

    A regular expression cannot match nested braces; math-verify extracts boxed content only
    after parsing it, which loses non-math answers such as a letter or a word.
    """
    found: list[str] = []
    for match in _BOX_RE.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:i])
                    break
    for match in _BOX_BARE_RE.finditer(text):
        found.append(match.group(1))
    return found


def _clean(candidate: str) -> str:
    """Trim what surrounds an answer in prose: math delimiters, trailing period, bold marks."""
    s = candidate.strip()
    s = s.strip("*").strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) > len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    s = re.sub(r"[.;,]+$", "", s).strip()
    return s


def extract_answer(text: str | None, *, choices: str | None = None, last_number: bool = True) -> str | None:
    """The final answer stated in `text`, or None when it states none.

    Args:
        text: a model's completion.
        choices: the option letters of a multiple-choice question (for example "ABCD"); when
            given, the answer is a letter and a bare letter at the end is accepted.
        last_number: fall back to the last number in the text when no answer is stated
            explicitly. Step labels ("Step 2:") and list numbers never count as that number.
            Turn it off for text that was cut off, whose last number is a step's, not an answer.
    """
    if not text or not text.strip():
        return None
    text = _SCORE_NOTE_RE.sub(" ", text)
    boxed = [b.strip() for b in _boxed_contents(text) if b.strip()]
    if boxed:
        answer = _clean(boxed[-1])
        return _as_choice(answer, choices) if choices else answer
    for pattern in (_HASH_RE, _ANSWER_IS_RE):
        matches = [m for m in pattern.findall(text) if not _NEGATED_RE.match(m.strip())]
        if matches:
            answer = _clean(matches[-1])
            if choices:
                letter = _as_choice(answer, choices)
                if letter:
                    return letter
                continue
            answer = _leading_math(answer)
            if re.search(r"[0-9A-Za-z]", answer):
                return answer
            # "The answer is:" then a cut-off display ("\[", ":" or "\"): no answer stated here
    if choices:
        letters = [m for m in _LETTER_IN_TEXT_RE.findall(text)]
        flat = [next(x for x in group if x) for group in letters]
        flat = [x for x in flat if x.upper() in choices.upper()]
        return flat[-1].upper() if flat else None
    if not last_number:
        return None
    numbers = _NUMBER_RE.findall(_WORDY_NOTE_RE.sub(" ", _STEP_LABEL_RE.sub(" ", text)))
    if numbers:
        return _clean(numbers[-1].replace("$", "").strip())
    return None


_WORD = re.compile(r"(?<!\\)\b[A-Za-z]{2,}\b")


def _leading_math(answer: str) -> str:
    """The mathematical part of what follows "The answer is": "18 dollars." -> "18",
    "6 / 4 = 1.5 cookies" -> "1.5", "\\frac{1}{2} of the cake" -> "\\frac{1}{2}".

    Tokens are kept up to the first plain word (LaTeX commands are not words); of an equation
    chain, the value after the last "=" is the answer. A sentence with no math stays whole
    (a word answer such as "Tuesday").
    """
    if answer.startswith("\\text") or not re.search(r"\d|\\", answer):
        return answer
    kept: list[str] = []
    for token in answer.split():
        bare = re.sub(r"\\[A-Za-z]+", "", token)
        if _WORD.search(bare) or bare.strip("()[],.;:") in ("a", "A", "I"):
            break
        kept.append(token)
    expression = " ".join(kept).strip()
    if "=" in expression:
        expression = expression.rsplit("=", 1)[1].strip()
    expression = _clean(expression.replace("$", "").strip()) if expression else ""
    if not expression:
        numbers = _NUMBER_RE.findall(answer)
        return _clean(numbers[0].replace("$", "").strip()) if numbers else answer
    return expression


def _as_choice(answer: str, choices: str) -> str | None:
    s = re.sub(r"\\text\{([^}]*)\}", r"\1", answer).strip()
    m = _LETTER_RE.match(s)
    if m and m.group(1).upper() in choices.upper():
        return m.group(1).upper()
    m = re.match(r"^\(?([A-Ja-j])\)?\s", s)
    if m and m.group(1).upper() in choices.upper():
        return m.group(1).upper()
    return None


_UNIT_WORDS = re.compile(r"(?<=\d)\s*[a-zA-Z][a-zA-Z .']*$")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^}]*)\}")


def normalize_answer(answer: str) -> str:
    """A canonical string form: no dollar or percent signs, thousands commas, units or spaces."""
    s = answer.strip()
    s = _TEXT_CMD.sub(r"\1", s)
    s = s.replace("\\$", "").replace("\\%", "").replace("\\!", "").replace("\\,", "")
    s = s.replace("$", "").replace("%", "")
    s = re.sub(r"^\\left|\\right", "", s)
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = _UNIT_WORDS.sub("", s)
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"\.$", "", s)
    s = re.sub(r"^\\?\(?([A-Ja-j])\)?$", lambda m: m.group(1).upper(), s)
    return s


def _as_number(s: str) -> Fraction | None:
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?|-?\.\d+)", s)
    if m:
        return Fraction(m.group(1))
    m = re.fullmatch(r"(-?\d+)/(\d+)", s) or re.fullmatch(
        r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", s
    )
    if m:
        groups = m.groups()
        if len(groups) == 3:
            num, den = int(groups[1]) * (-1 if groups[0] else 1), int(groups[2])
        else:
            num, den = int(groups[0]), int(groups[1])
        return Fraction(num, den) if den else None
    return None


def _decimals(s: str) -> int:
    return len(s.split(".", 1)[1]) if "." in s and "/" not in s and "frac" not in s else 0


def _numbers_match(a: str, b: str, x: Fraction, y: Fraction) -> bool:
    if x == y:
        return True
    # A decimal rounded to two or more places matches the exact value it rounds:
    # "3.33" matches "10/3", "0.17" matches "1/6"; "3.3" or "3" do not.
    for shown, exact, value in ((a, y, x), (b, x, y)):
        places = _decimals(shown)
        if places >= 2 and places > _decimals(b if shown is a else a):
            if abs(exact - value) <= Fraction(1, 2 * 10**places):
                return True
    return False


def exact_key(normal: str) -> Fraction | None:
    """For a normalized answer that is a number shown with fewer than two decimals, its value:
    two such answers match (`answers_match`) exactly when their values are equal, since the
    rounding tolerance needs a decimal with two or more places. None for any other answer."""
    value = _as_number(normal) if normal else None
    return value if value is not None and _decimals(normal) < 2 else None


def answers_match(a: str | None, b: str | None) -> bool:
    """Whether two final answers are the same answer.

    Numbers are compared exactly after normalisation ("$1,000" == "1000", "20%" == "20",
    "18 dollars" == "18"), with a tolerance for a decimal rounded to two or more places;
    multiple-choice letters ignore case and parentheses; everything else goes to math-verify
    (for example "\\frac{1}{2}" == "0.5", "x=2" == "2").
    """
    if a is None or b is None:
        return False
    na, nb = normalize_answer(a), normalize_answer(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    x, y = _as_number(na), _as_number(nb)
    if x is not None and y is not None:
        return _numbers_match(na, nb, x, y)
    if _LETTER_RE.match(na) or _LETTER_RE.match(nb):
        return False
    if len(na) > MAX_SYMBOLIC_CHARS or len(nb) > MAX_SYMBOLIC_CHARS:
        return False
    return _symbolic_match(na, nb)


@lru_cache(maxsize=4096)
def _parse(expr: str, with_timeout: bool):
    from math_verify import parse

    # math-verify guards its own runtime with signal.alarm, which only works on the main
    # thread; elsewhere (a LangGraph worker, Streamlit's script thread) we turn its timeout off
    # and rely on MAX_SYMBOLIC_CHARS to keep inputs small.
    return parse(f"${expr}$", parsing_timeout=5 if with_timeout else None)


@lru_cache(maxsize=4096)
def _symbolic_match(a: str, b: str) -> bool:
    from math_verify import verify

    on_main = threading.current_thread() is threading.main_thread()
    try:
        pa, pb = _parse(a, on_main), _parse(b, on_main)
        if not pa or not pb:
            return False
        return bool(verify(pa, pb, timeout_seconds=5 if on_main else None))
    except Exception:  # math-verify raises on exotic input; an unparsable answer matches nothing
        return False

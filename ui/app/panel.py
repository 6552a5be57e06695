"""The status panel: samples drawn, the candidate table, the easy/hard decisions, each
refinement round (feedback and a diff of the revision; for code, the test results on the
question's examples and a diff of the program), and the final vote.

`LivePanel` redraws only the sections an event changed while a problem runs; `render_panel`
draws a stored `Progress` at once (a reloaded conversation).
"""

from __future__ import annotations

import difflib
import math

import pandas as pd
import streamlit as st

from magicore.tools.programs import extract_program
from magicore.ui.app.progress import FINAL, SAMPLES, TABLE, WRITING, Progress

# Excel's red-yellow-green scale: 0 (surely wrong) .. 1 (surely right)
_LOW, _MID, _HIGH = (248, 105, 107), (255, 235, 132), (99, 190, 123)


def score_color(score: float | None) -> str:
    """CSS for a step score's cell: red at 0, yellow at 0.5, green at 1."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return ""
    x = min(max(float(score), 0.0), 1.0)
    a, b, t = (_LOW, _MID, x * 2) if x < 0.5 else (_MID, _HIGH, x * 2 - 1)
    rgb = tuple(round(p + (q - p) * t) for p, q in zip(a, b, strict=True))
    return "background-color: #{:02x}{:02x}{:02x}; color: #111".format(*rgb)


def md(text: str) -> str:
    """Model text as Markdown without accidental LaTeX ($5 and $3 are prices, not math)."""
    return (text or "").replace("$", "\\$")


def candidates_frame(candidates: list[dict], *, scored: bool) -> pd.DataFrame:
    steps = max((len(r.get("step_scores") or []) for r in candidates), default=0)
    rows = []
    for r in candidates:
        origin = r.get("origin") or "solver"
        row = {"#": (r.get("index") or 0) + 1, "answer": r.get("answer") if r.get("answer") is not None else "(none)",
               "from": origin if origin == "solver" else f"{origin}, round {r.get('round')}"}  # fmt: skip
        scores = r.get("step_scores") or []
        for i in range(steps):
            row[f"step {i + 1}"] = scores[i] if i < len(scores) else float("nan")
        if scored:
            row["ORM"], row["R"] = r.get("orm"), r.get("reward")
        rows.append(row)
    return pd.DataFrame(rows)


def render_samples(p: Progress) -> None:
    k = max(p.k, 1)
    st.progress(min(p.drawn / k, 1.0), text=f"Samples drawn: {p.drawn} of {k}")


def writing_text(p: Progress) -> str:
    """The samples the Solver is writing, as they are written (servers answering one sample per
    request stream; a server honouring n=k answers all at once), each under its own header."""
    return "\n\n".join(f"--- Writing sample {p.drawn + i + 1}…\n{text[-1200:]}" for i, text in enumerate(p.writing.values()))


def render_table(p: Progress) -> None:
    if p.candidates:
        render_candidates(p.candidates, p.scored_round, p.reward_name)


def render_candidates(rows: list[dict], scored_round: int | None, reward_name: str | None = None) -> None:
    frame = candidates_frame(rows, scored=scored_round is not None)
    if scored_round is None:
        st.caption("Sampled candidates")
        st.dataframe(frame, hide_index=True, width="stretch")
        return
    if scored_round == 0:
        st.caption(f"Candidates after sampling, scored by {reward_name or 'the reward model'}: step scores "
                   "(red wrong .. green right), ORM (outcome score) and R = ORM + product of the step scores")  # fmt: skip
    else:
        st.caption(f"Pool after round {scored_round}: the best k of the earlier and the refined chains by R")
    step_cols = [c for c in frame.columns if c.startswith("step ")]
    # the grid shows a missing number as "None" whatever the Styler says: step cells are text
    # ("" where a chain has fewer steps), coloured from the numbers
    colors = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for col in step_cols:
        colors[col] = frame[col].map(score_color)
        frame[col] = frame[col].map(lambda x: "" if pd.isna(x) else f"{x:.2f}")
    styler = frame.style.apply(lambda _frame: colors, axis=None).format(precision=2)
    st.dataframe(styler, hide_index=True, width="stretch")


def route_markdown(b: dict) -> str:
    verdict = ":red-badge[hard]" if b["hard"] else ":green-badge[easy]"
    when = "sampling" if not b["round"] else f"round {b['round']}"
    z = "n/a" if b.get("mean_z") is None else f"{b['mean_z']:+.2f}"
    cond1 = "≥ 0 ✓" if b.get("cond1") else "< 0 ✗"
    if b.get("will_refine"):
        then = f"review and refine (round {b['round'] + 1})"
    elif b["hard"]:
        then = "stop: the refinement rounds are used up"
    else:
        then = "stop: the weighted vote settles it"
    return (f"**Decision after {when}:** {verdict} → {then}  \n"
            f"Majority `{b.get('majority')}`: its chains' mean z-score {z} ({cond1}); vote confidence "
            f"ORM {b['orm_confidence']:.2f}, PRM {b['prm_confidence']:.2f} (hard needs z < 0 and one < 0.50; "
            f"calibration: {b.get('calibration') or 'self'})")  # fmt: skip


def revision_diff(previous: str, text: str) -> str:
    lines = list(difflib.unified_diff(previous.strip().splitlines(), text.strip().splitlines(),
                                      "previous draft", "revision", lineterm="", n=2))  # fmt: skip
    return "\n".join(lines) or "(no change)"


def _render_chain(chain: dict, self_refine: bool) -> None:
    if "feedback" in chain:
        low = chain.get("low_steps") or []
        who = "**Feedback**" if self_refine else "**Reviewer**"
        st.markdown(who + (f" · low-scoring steps: {', '.join(map(str, low))}" if low else ""))
        with st.container(border=True):
            st.markdown(md(chain["feedback"]) or "(empty)")
        if chain.get("evidence") and any("\n" in line or line.startswith("ran the program") for line in chain["evidence"]):
            st.caption("Test results on the question's examples")  # a program's run (code family)
            st.code("\n".join(chain["evidence"]), language=None)
        elif chain.get("evidence"):
            st.caption("Tool evidence: " + md("; ".join(chain["evidence"])))
        if chain.get("done"):
            st.caption("The feedback says the solution is correct: stop.")
    if "text" in chain:
        answer = chain.get("answer")
        before = extract_program(chain.get("previous", ""))
        if answer is not None and "\n" in answer and before is not None:  # a program: diff the code
            st.markdown(f"**{'Revision' if self_refine else 'Refiner'}** → the program, as changed")
            st.code(revision_diff(before, answer), language="diff")
            if chain.get("tests"):
                st.caption("The revised program's results on the question's examples")
                st.code("\n".join(chain["tests"]), language=None)
        else:
            st.markdown(f"**{'Revision' if self_refine else 'Refiner'}** → answer `{answer if answer is not None else '(none)'}`")
            st.code(revision_diff(chain.get("previous", ""), chain["text"]), language="diff")
    elif "feedback" in chain and not chain.get("done"):
        st.caption("Waiting for the revision…")
    elif not chain:
        st.caption("Waiting for the Reviewer…")


def render_block(b: dict, self_refine: bool = False) -> None:
    if b["kind"] == "route":
        st.markdown(route_markdown(b))
    elif b["kind"] == "pool":
        render_candidates(b["rows"], b["round"])
    elif b["kind"] == "draft":
        st.markdown(f"**First draft** → answer `{b.get('answer')}`")
        st.code(b.get("text", ""), language=None, wrap_lines=True)
        if b.get("tests"):
            st.caption("The draft program's results on the question's examples")
            st.code("\n".join(b["tests"]), language=None)
    else:
        chains = sorted(b["chains"].items(), key=lambda kv: int(kv[0]))
        title = "feedback and revision" if self_refine else "review and refinement"
        st.markdown(f"**Round {b['round']}: {title}** ({len(chains)} chain{'s' if len(chains) != 1 else ''})")
        if len(chains) == 1:
            _render_chain(chains[0][1], self_refine)
            return
        for tab, (_index, chain) in zip(st.tabs([f"Chain {int(i) + 1}" for i, _ in chains]), chains, strict=True):
            with tab:
                _render_chain(chain, self_refine)


def render_final(p: Progress) -> None:
    votes = (p.final or {}).get("votes") or {}
    if not votes:
        return
    how = {"sc": "votes per answer (majority)", "bok": "the best chain's reward",
           "self-refine": "the last draft's answer"}.get(p.final.get("method"), "weight per answer: sum of R")  # fmt: skip
    st.caption(f"Final vote: {how}")
    frame = pd.DataFrame({"answer": list(votes), "weight": list(votes.values())}).sort_values("weight", ascending=False)
    st.bar_chart(frame, x="answer", y="weight", horizontal=True, sort="-weight",
                 height=max(120, 36 * len(frame) + 60))  # fmt: skip


def _is_self_refine(p: Progress) -> bool:
    return any(b["kind"] == "draft" for b in p.blocks)


def render_panel(p: Progress) -> None:
    render_samples(p)
    render_table(p)
    for block in p.blocks:
        render_block(block, _is_self_refine(p))
    render_final(p)


class LivePanel:
    """Placeholders in page order inside `parent` (the status container); `update` redraws the
    sections named in `dirty`. Made with the parent's own methods, not inside `with parent:`:
    leaving a status container's block marks it complete."""

    def __init__(self, parent) -> None:
        self.timer = parent.empty()
        self._samples = parent.empty()
        self._writing = parent.empty()
        self._table = parent.empty()
        self._timeline = parent.container()
        self._blocks: list = []
        self._final = parent.empty()

    def update(self, p: Progress, dirty: set[str]) -> None:
        if SAMPLES in dirty:
            with self._samples.container():
                render_samples(p)
        if WRITING in dirty:  # one element, replaced whole: a shorter list leaves no stale blocks behind
            if p.writing:
                self._writing.code(writing_text(p), language=None, wrap_lines=True)
            else:
                self._writing.empty()
        if TABLE in dirty:
            with self._table.container():
                render_table(p)
        while len(self._blocks) < len(p.blocks):
            with self._timeline:
                self._blocks.append(st.empty())
        for key in sorted(k for k in dirty if k.startswith("block:")):
            i = int(key.split(":")[1])
            with self._blocks[i].container():
                render_block(p.blocks[i], _is_self_refine(p))
        if FINAL in dirty:
            with self._final.container():
                render_final(p)

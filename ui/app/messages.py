"""Chat messages: the question, and the reply with its answer, method, route, cost and trace;
an error or a stopped run reads as a plain sentence."""

from __future__ import annotations

import streamlit as st

from magicore.ui.app.panel import md, render_panel
from magicore.ui.app.progress import Progress
from magicore.ui.app.tracing import trace_url


def route_text(reply: dict) -> str:
    from magicore.graphs.result import RunResult
    from magicore.ui.render import route_summary

    result = RunResult(question="-", answer=reply.get("answer"), method=reply.get("method") or "magicore",
                       route=reply.get("route") or [], rounds=reply.get("rounds") or 0)  # fmt: skip
    return route_summary(result)


def status_label(reply: dict) -> str:
    seconds = reply.get("seconds")
    took = f" after {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    return {"ok": f"Solved in {seconds or 0:.1f} s: how it went", "stopped": f"Stopped{took}: progress so far",
            "error": "Failed: progress so far"}.get(reply.get("status"), "Details")  # fmt: skip


def vote_share(reply: dict) -> float | None:
    """The winning answer's share of the final vote (its weight over all answers' weights)."""
    votes = reply.get("votes") or {}
    total = sum(float(v) for v in votes.values())
    answer = reply.get("answer")
    if answer is None or total <= 0 or str(answer) not in votes:
        return None
    return float(votes[str(answer)]) / total


def role_costs(reply: dict) -> str:
    """What each role cost: "solver 8 calls, 1,200 tokens · reward 24 calls, ..." (tokens in and out)."""
    parts = []
    for role, used in (reply.get("usage_by_role") or {}).items():
        calls = int(used.get("llm_calls", 0))
        tokens = int(used.get("input_tokens", 0)) + int(used.get("output_tokens", 0))
        if calls:
            parts.append(f"{role} {calls} call{'s' if calls != 1 else ''}, {tokens:,} tokens")
    return " · ".join(parts)


def render_answer(reply: dict) -> None:
    answer = reply.get("answer")
    if answer is None:
        st.warning("No answer: no chain stated a parsable final answer.")
    elif "\n" in str(answer):  # a program (code questions)
        st.markdown("**Answer**: the program")
        st.code(str(answer), language="python")
    else:
        share = vote_share(reply)
        left, right = st.columns([3, 1])
        # keyed, so the page's answers can be told from the other numbers (the screenshot waits for one)
        left.container(key=f"answer-{reply.get('turn') or id(reply)}").metric("Answer", str(answer))
        if share is not None:
            right.metric("Vote share", f"{share:.0%}", help="the answer's weight in the final vote over all answers'")
    method = reply.get("method_label") or reply.get("method")
    st.markdown(
        f"**Method** {method} &nbsp;·&nbsp; **Route** {route_text(reply)} &nbsp;·&nbsp; **Cost** "
        f"{reply.get('llm_calls', 0)} LLM calls, {reply.get('input_tokens', 0):,} input + "
        f"{reply.get('output_tokens', 0):,} output tokens, {reply.get('seconds', 0.0):.1f} s"
    )
    if costs := role_costs(reply):
        st.caption(f"Cost by role: {costs}")
    details = [f"model `{reply.get('model')}`"]
    if reply.get("reward"):
        details.append(f"reward `{reply['reward']}`")
    details.append(f"k {reply.get('k')}, temperature {reply.get('temperature')}")
    trace_id = reply.get("trace_id")
    if trace_id:
        url = trace_url(trace_id)
        details.append(f"trace `{trace_id}`" + (f" ([open]({url}))" if url else ""))
    st.caption(" · ".join(details))


def render_outcome(reply: dict) -> None:
    """What the reply says below its status panel."""
    status = reply.get("status")
    if status == "ok":
        render_answer(reply)
    elif status == "stopped":
        st.warning("Stopped before an answer. Ask again, or change the settings.", icon=":material/stop_circle:")
    else:
        st.error(f"**Error:** {md(reply.get('error') or 'unknown error')}  \nThe conversation goes on: fix the "
                 "settings (sidebar) or ask again.", icon=":material/error:")  # fmt: skip


def render_message(message: dict) -> None:
    if message.get("role") == "user":
        with st.chat_message("user"):
            st.markdown(md(message.get("content", "")))
        return
    with st.chat_message("assistant"):
        try:
            panel = Progress.from_dict(message.get("panel"))
            if panel.drawn or panel.blocks:
                state = "complete" if message.get("status") == "ok" else "error"
                with st.status(status_label(message), state=state, expanded=False):
                    render_panel(panel)
            render_outcome(message)
        except Exception as e:  # one unreadable message from an older version must not break the page
            st.warning(f"This reply was saved in a form this version cannot show ({type(e).__name__}: {e}).")

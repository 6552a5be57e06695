"""magicore's chat app (Streamlit): ask a question, watch the Solver, the reward models, the
Reviewer and the Refiner at work, get the answer with its route and cost.

Run it with `magicore ui` (or `streamlit run ui/app/main.py`). The conversation id in the address
(`?c=...`) names a thread of the SQLite checkpointer, so a reload keeps the history. Runs go to
one event loop per server process (ui/app/runner.py); any rerun of this script while a run is in
flight (the Stop button, a new question, a closed tab) cancels the run.
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import streamlit as st

# Only light modules here: the page and its chat input show before langgraph, langchain and
# pandas are imported (main() imports them after drawing the input).
from magicore.ui.app.sidebar import Settings, render_conversation, render_sidebar

POLL_SECONDS = 0.1
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ACTIVE = "magicore_active_run"  # session_state: the Event a run in this session sets when it is over


def wait_for_stopped_run(timeout: float = 20.0) -> None:
    """With fast reruns (Streamlit's default), a click during a run stops that run's script and
    starts the new one at once, in another thread: let the stopped run finish recording itself
    before the history is read, or its turn would be missing from the page."""
    finished = st.session_state.get(_ACTIVE)
    if isinstance(finished, threading.Event):
        finished.wait(timeout)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def conversation_id() -> str:
    value = st.query_params.get("c")
    if not value or not _ID.match(value):
        value = new_id()
        st.query_params["c"] = value
    return value


def new_conversation() -> None:
    st.query_params["c"] = new_id()


@st.cache_resource(show_spinner=False)
def warm_up() -> bool:
    """Import what the first question needs while its asker is still typing."""
    import magicore.agents.backends  # noqa: F401 - imported for its side effect: loaded modules
    import magicore.graphs.api  # noqa: F401
    import magicore.graphs.build  # noqa: F401
    import magicore.tools.rewards.verifier  # noqa: F401

    return True


def answer_live(question: str, settings: Settings, thread_id: str, store) -> None:
    finished = st.session_state[_ACTIVE] = threading.Event()
    try:
        _answer_live(question, settings, thread_id, store)
    finally:
        finished.set()


def _answer_live(question: str, settings: Settings, thread_id: str, store) -> None:
    from magicore.ui.app.backend import prepare_turn, ui_loop
    from magicore.ui.app.messages import render_outcome, status_label
    from magicore.ui.app.panel import LivePanel, md
    from magicore.ui.app.progress import Progress
    from magicore.ui.app.store import Turn, describe

    loop = ui_loop()
    turn, run, progress, started = Turn(question), None, Progress(), time.monotonic()
    try:
        with st.chat_message("user"):
            st.markdown(md(question))
        with st.chat_message("assistant"):
            try:
                with st.spinner("Preparing the model…"):
                    turn = prepare_turn(question, settings)
            except Exception as error:  # noqa: BLE001 - a bad setting or a server that is down: say so
                reply = turn.reply("error", error=describe(error))
                loop.call(store.record(thread_id, turn, reply), timeout=30)
                render_outcome(reply)
                return
            stop = st.empty()
            stop.button("Stop", icon=":material/stop_circle:", key="stop", help="Cancel this run")
            # Open and running until the answer. The status is never entered as a `with` block
            # (leaving it marks the status complete) and its label is not updated while the
            # run goes on (an update without `expanded` folds it): the elapsed time is a line
            # inside the panel.
            status = st.status("Solving…", expanded=True, state="running")
            panel = LivePanel(status)
            started = time.monotonic()
            run = loop.start(lambda emit: store.run_turn(thread_id, turn, emit))
            while True:
                finished = run.wait(POLL_SECONDS)
                dirty: set[str] = set()
                for event in run.drain():
                    dirty |= progress.apply(event)
                if dirty:
                    panel.update(progress, dirty)
                # every Streamlit call is where a rerun (Stop, a new question) interrupts us
                panel.timer.caption(f"Working for {time.monotonic() - started:.1f} s")
                if finished:
                    break
            stop.empty()
            panel.timer.empty()
            try:
                reply = run.result()
            except Exception as error:  # noqa: BLE001 - the store itself failed (disk full, locked...)
                reply = turn.reply("error", progress, error=describe(error))
            ok = reply.get("status") == "ok"
            status.update(label=status_label(reply), state="complete" if ok else "error", expanded=False)
            render_outcome(reply)
    except BaseException:  # Streamlit's stop or rerun (or a bug): cancel the run, record the turn
        if run is not None:
            run.cancel()
        if run is None or run.cancelled:  # a finished run has recorded itself
            stopped = turn.reply("stopped", progress, seconds=round(time.monotonic() - started, 3))
            loop.call(store.record(thread_id, turn, stopped), timeout=30)
        raise


def main() -> None:
    st.set_page_config(page_title="magicore", page_icon=":material/psychology:", layout="wide")
    settings = render_sidebar()
    thread_id = conversation_id()
    render_conversation(thread_id, new_conversation)
    st.title("magicore")
    st.caption("A Solver samples solutions, reward models score every step, easy questions are settled by a "
               "weighted vote, hard ones go through rounds of review and refinement (MAgICoRe).")  # fmt: skip
    # pinned to the bottom of the page wherever it is called: drawn first, so it shows at once
    question = st.chat_input("Ask a question (a word problem, a math problem, a multiple-choice question)")

    from magicore.ui.app.backend import ui_loop
    from magicore.ui.app.messages import render_message
    from magicore.ui.app.store import DB_NAME, ConversationStore, data_dir, describe

    store = ConversationStore(data_dir() / DB_NAME)
    wait_for_stopped_run()
    try:
        history = ui_loop().call(store.history(thread_id), timeout=30)
    except Exception as error:  # noqa: BLE001
        st.error(f"The conversation history cannot be read from {store.path}: {describe(error)}")
        history = []
    for message in history:
        render_message(message)
    if question:
        answer_live(question, settings, thread_id, store)
    warm_up()


main()

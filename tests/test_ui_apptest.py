"""The chat app under Streamlit's AppTest, with the scripted demo model and a real mock server:
question in, status panel, answer out; errors as chat messages; history kept in SQLite;
tracing on and off; a stopped run cancelled and recorded whole."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from magicore.agents.fake import ScriptedFakeChatModel
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.graphs.build import build_graph
from magicore.graphs.config import MethodConfig
from magicore.ui.app.runner import LoopThread
from magicore.ui.app.store import DB_NAME, ConversationStore, Turn

APP = Path(__file__).resolve().parents[1] / "ui" / "app" / "main.py"
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have now?"


@pytest.fixture(autouse=True)
def ui_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGICORE_UI_DIR", str(tmp_path))
    monkeypatch.setenv("MAGICORE_UI_MODEL_FACTORY", "magicore.ui.app.demo:demo_model")
    monkeypatch.setenv("MAGICORE_UI_REWARD", "verifier")
    for name in ("MAGICORE_MODEL", "MAGICORE_TRACE", "MAGICORE_TRACE_URL", "MAGICORE_UI_METHOD"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def app(conversation: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    if conversation:
        at.query_params["c"] = conversation
    return at.run()


def ask(at: AppTest, question: str = QUESTION) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def texts(block) -> str:
    return "\n".join([m.value for m in block.markdown] + [c.value for c in block.caption])


def table_answers(frame) -> list[str]:
    return sorted(frame.value["answer"].astype(str))


def test_question_in_status_panel_and_answer_out():
    at = app()
    assert not at.exception and [m.name for m in at.chat_message] == []
    ask(at)
    user, assistant = at.chat_message
    assert user.markdown[0].value == QUESTION
    status = assistant.status[0]
    assert status.state == "complete" and status.label.startswith("Solved in")
    assert assistant.get("progress")[0].value == 100  # 8 of 8 samples drawn
    sampled, pool = assistant.dataframe
    assert table_answers(sampled) == sorted(["9", "6", "10", "5", "12", "8", "8", "8"])
    assert list(sampled.value["step 2"]) == ["0.05"] * 8  # the verifier caught every wrong sum
    assert sorted(sampled.value["step 3"]) == [""] * 5 + ["0.05"] * 3  # only the majority wrote a step 3
    assert table_answers(pool) == ["7"] * 8 and set(pool.value["from"]) == {"refiner, round 1"}
    panel = texts(status)
    assert ":red-badge[hard] → review and refine (round 1)" in panel
    assert ":green-badge[easy] → stop: the weighted vote settles it" in panel
    assert [t.label for t in assistant.tabs] == [f"Chain {i}" for i in range(1, 9)]
    diffs = [c.value for c in assistant.code]
    assert len(diffs) == 8 and all("+Step 2: 3 + 4 = 7." in d and "-Step 2: 3 + 4 = " in d for d in diffs)
    assert sum("Step 2 is wrong: 3 + 4 is 7" in m.value for m in status.markdown) == 8
    assert assistant.get("vega_lite_chart"), "the final vote is drawn as a bar chart"
    assert [(m.label, m.value) for m in assistant.metric] == [("Answer", "7"), ("Vote share", "100%")]
    summary = texts(assistant)
    assert "**Method** MAgICoRe" in summary and "**Route** hard: 1 refinement round(s), then easy" in summary
    assert "24 LLM calls" in summary and "reward `verifier`" in summary
    assert "Cost by role: solver 8 calls, " in summary and "reviewer 8 calls, " in summary
    assert "refiner 8 calls, " in summary

    # a reload of the same address shows the same conversation, read back from SQLite
    again = app(at.query_params["c"])
    assert [m.name for m in again.chat_message] == ["user", "assistant"]
    assert [(m.label, m.value) for m in again.metric] == [("Answer", "7"), ("Vote share", "100%")]
    assert again.status[0].label == status.label and len(again.chat_message[1].dataframe) == 2
    # another address is another conversation
    assert [m.name for m in app("other").chat_message] == []


def test_baselines_show_their_own_panels_in_one_conversation():
    at = app()
    at.sidebar.selectbox(key="method").set_value("sc").run()
    ask(at)
    sc = at.chat_message[1]
    assert [m.value for m in sc.metric] == ["8", "38%"]  # three of eight samples agree on the wrong sum
    assert "Self-Consistency" in texts(sc) and "majority vote" in texts(sc)
    assert list(sc.dataframe[0].value.columns) == ["#", "answer", "from"]  # no scores
    assert sc.get("vega_lite_chart")

    at.sidebar.selectbox(key="method").set_value("self-refine").run()
    ask(at)
    refine = at.chat_message[3]
    assert [m.value for m in refine.metric] == ["7", "100%"]
    panel = texts(refine.status[0])
    assert "**First draft**" in panel and "**Round 1: feedback and revision**" in panel
    assert "**Round 2: feedback and revision**" in panel and "The feedback says the solution is correct" in panel
    assert any("+Step 2: 3 + 4 = 7." in c.value for c in refine.code)
    assert [m.name for m in at.chat_message] == ["user", "assistant"] * 2


def test_errors_are_chat_messages_and_the_app_keeps_working():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    at = app()
    at.sidebar.radio(key="backend").set_value("server").run()
    at.sidebar.text_input(key="server_url").set_value(dead).run()
    ask(at)
    error = at.chat_message[1].error[0].value
    assert error.startswith("**Error:** cannot reach the model server at " + dead)

    with MockServer(MockSettings(mode="malformed")) as bad, MockServer(MockSettings(mode="empty")) as empty:
        at.sidebar.text_input(key="server_url").set_value(bad.base_url).run()
        at.sidebar.text_input(key="model_name").set_value("mock-model").run()
        ask(at, "What is 40 + 2?")
        assert "sent a malformed response" in at.chat_message[3].error[0].value
        assert at.chat_message[3].status[0].state == "error"

        at.sidebar.text_input(key="server_url").set_value(empty.base_url).run()
        ask(at, "What is 40 + 2?")
        assert "No answer: no chain stated a parsable final answer." in at.chat_message[5].warning[0].value

    at.sidebar.radio(key="backend").set_value("factory").run()
    ask(at)
    assert [m.value for m in at.chat_message[7].metric] == ["7", "100%"]
    reloaded = app(at.query_params["c"])  # the failed turns are part of the history too
    assert [len(m.error) for m in reloaded.chat_message[1::2]] == [1, 1, 0, 0]


def test_tracing_toggle_shows_the_trace_id_and_link(spans, monkeypatch):
    monkeypatch.setenv("MAGICORE_TRACE_URL", "http://localhost:6006/redirects/traces/{trace_id}")
    at = app()
    at.sidebar.selectbox(key="method").set_value("sc").run()
    at.sidebar.toggle(key="tracing").set_value(True).run()
    if "exporter" in [w.key for w in at.sidebar.text_input]:
        at.sidebar.text_input(key="exporter").set_value("console").run()
    ask(at)
    caption = texts(at.chat_message[1])
    trace_id = re.search(r"trace `([0-9a-f]{32})` \(\[open\]\((\S+)\)\)", caption)
    assert trace_id, caption
    assert trace_id.group(2) == f"http://localhost:6006/redirects/traces/{trace_id.group(1)}"
    roots = [s for s in spans.get_finished_spans() if s.name == "invoke_workflow sc"]
    assert [f"{s.context.trace_id:032x}" for s in roots] == [trace_id.group(1)]

    at.sidebar.toggle(key="tracing").set_value(False).run()
    spans.clear()
    ask(at)
    assert "trace `" not in texts(at.chat_message[3]) and [m.value for m in at.chat_message[3].metric][0] == "8"
    assert spans.get_finished_spans() == ()  # the run was not traced at all


class SlowModel(ScriptedFakeChatModel):
    """A model whose requests never finish on their own; it notes when they are cancelled."""

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        self.requests.append({"started": time.monotonic()})
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.requests.append({"cancelled": time.monotonic()})
            raise


def test_a_stopped_run_is_cancelled_and_recorded_whole(tmp_path):
    loop, store = LoopThread(), ConversationStore(tmp_path / DB_NAME)
    slow = SlowModel()
    turn = Turn("What is 40 + 2?", build_graph("sc", model=slow, config=MethodConfig(k=2), checkpointer=False))
    run = loop.start(lambda emit: store.run_turn("t", turn, emit))
    deadline = time.monotonic() + 10
    while not slow.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slow.requests, "the model was never asked"
    started = time.monotonic()
    assert run.cancel(timeout=5) and run.cancelled
    assert time.monotonic() - started < 2
    assert any("cancelled" in r for r in slow.requests)  # the model request itself was cancelled
    assert loop.call(store.history("t")) == []  # nothing half-written
    assert loop.call(store.record("t", turn, turn.reply("stopped")))
    assert not loop.call(store.record("t", turn, turn.reply("stopped")))  # recorded once

    from magicore.ui.app.demo import demo_model

    after = Turn("What is 40 + 2?", build_graph("sc", model=demo_model(), config=MethodConfig(k=8), checkpointer=False))
    events: list[dict] = []
    second = loop.start(lambda emit: store.run_turn("t", after, lambda e: events.append(e)))
    assert second.wait(20) and second.result()["answer"] == "43"
    assert [e["type"] for e in events] == ["chain"] * 8 + ["final"]
    history = loop.call(store.history("t"))
    assert [(m["role"], m.get("status")) for m in history] == [
        ("user", None), ("assistant", "stopped"), ("user", None), ("assistant", "ok")
    ]


def test_replies_saved_by_another_version_still_show(ui_env):
    loop, store = LoopThread(), ConversationStore(ui_env / DB_NAME)
    newer = Turn("What is 1 + 1?", meta={"method": "sc"})
    reply = newer.reply("ok", answer="2", seconds=1.0)
    reply["panel"]["a_field_from_a_later_version"] = [1, 2]
    broken = Turn("What is 2 + 2?", meta={"method": "sc"})
    odd = broken.reply("ok", answer="4", seconds="not a number")  # a type this version cannot draw
    odd["panel"]["blocks"] = "not a list"
    assert loop.call(store.record("old", newer, reply)) and loop.call(store.record("old", broken, odd))
    at = app("old")
    assert not at.exception, at.exception
    page = "\n".join(m.value for m in at.markdown)
    assert "What is 1 + 1?" in page and "What is 2 + 2?" in page
    assert ("Answer", "2") in [(m.label, m.value) for m in at.metric]  # the first reply, whole
    assert any("cannot show" in w.value for w in at.warning)  # the second, in words
    at.chat_input[0].set_value(QUESTION).run()  # and the app keeps working
    assert not at.exception, at.exception


def test_the_solvers_text_is_shown_while_written_and_not_stored():
    from magicore.ui.app.progress import SAMPLES, TABLE, WRITING, Progress

    p = Progress()
    token = {"type": "token", "role": "solver", "node": "solve"}
    assert p.apply({**token, "call": "a", "text": "Step 1: "}) == {WRITING}
    p.apply({**token, "call": "b", "text": "Step 1: 2 + 2"})
    p.apply({**token, "call": "a", "text": "4 = 4"})
    assert p.apply({**token, "role": "reviewer", "call": "c", "text": "Step 2 is wrong"}) == set()
    assert p.writing == {"a": "Step 1: 4 = 4", "b": "Step 1: 2 + 2"}
    # a sample drawn whole leaves the writing area for the table
    assert p.apply({"type": "chain", "index": 0, "k": 2, "text": "Step 1: 4 = 4", "answer": "4"}) == {
        SAMPLES, TABLE, WRITING}
    assert p.writing == {"b": "Step 1: 2 + 2"} and p.drawn == 1
    from magicore.ui.app.panel import writing_text

    assert writing_text(p) == "--- Writing sample 2…\nStep 1: 2 + 2"
    assert "writing" not in p.to_dict() and Progress.from_dict(p.to_dict()).writing == {}
    assert WRITING in p.apply({"type": "scores", "round": 0, "pool": [], "reward": "verifier"})
    assert p.writing == {}  # scoring starts: nothing is being written any more

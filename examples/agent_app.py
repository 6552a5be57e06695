"""An agent app that embeds a MAgICoRe graph as a subgraph.

    python examples/agent_app.py "Tom has 3 apples and buys 4 more. How many does he have?"
    python examples/agent_app.py "Hello there!" --model vllm:MODEL@http://gpu:8000/v1

The app is a chat (`messages`). A router node sends questions that look like math to MAgICoRe,
which is a node of this graph (the compiled graph from `build_graph`, added with `add_node`),
and answers small talk directly with the same chat model. The app's state shares the keys
`question`, `answer`, `votes` and `rounds` with MAgICoRe's state: the router writes `question`,
the subgraph reads it and writes the other three back, and a last node turns them into a chat
message. Keys the app does not declare (the pool, the reviews, the usage) stay in the subgraph.
MAgICoRe's progress events reach the app's stream with `subgraphs=True`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Annotated, Literal, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from magicore.graphs.build import build_graph
from magicore.graphs.config import MethodConfig

SMALL_TALK = "You are a friendly assistant. Reply in one or two short sentences."
_MATH = re.compile(
    r"\d|[+\-*/=^%]|\b(how (many|much|long|far|old)|calculate|compute|solve|sum|total|product|"
    r"times|divided|percent|average|equation|probability|integer|fraction)\b",
    re.IGNORECASE,
)


class AppState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    intent: Literal["math", "chat"]
    # shared with the MAgICoRe subgraph: `question` goes in, the other three come back
    question: str
    answer: str | None
    votes: dict[str, float]
    rounds: int


def looks_like_math(text: str) -> bool:
    """A cheap router: digits, operators or math words. (A tiny model routes no better.)"""
    return bool(_MATH.search(text))


def last_user_text(messages: list[AnyMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


def build_app(model: BaseChatModel, *, reward=None, config: MethodConfig | None = None, checkpointer=None):
    """The compiled app: router -> magicore (subgraph) -> respond, or router -> chat."""
    magicore = build_graph("magicore", model=model, reward=reward, config=config)

    async def router(state: AppState) -> dict:
        text = last_user_text(state.get("messages") or [])
        intent = "math" if looks_like_math(text) else "chat"
        return {"intent": intent, "question": text} if intent == "math" else {"intent": intent}

    def after_router(state: AppState) -> Literal["magicore", "chat"]:
        return "magicore" if state["intent"] == "math" else "chat"

    async def chat(state: AppState) -> dict:
        reply = await model.ainvoke([SystemMessage(SMALL_TALK), *state["messages"]])
        return {"messages": [AIMessage(str(reply.content).strip())]}

    async def respond(state: AppState) -> dict:
        answer, rounds = state.get("answer"), state.get("rounds", 0)
        if answer is None:
            text = "I could not work out an answer to that."
        else:
            how = f"after {rounds} round{'s' if rounds != 1 else ''} of review and refinement" if rounds else \
                "settled by a reward-weighted vote"  # fmt: skip
            text = f"The answer is {answer} ({how})."
        return {"messages": [AIMessage(text, name="magicore")]}

    builder = StateGraph(AppState)
    builder.add_node("router", router)
    builder.add_node("magicore", magicore)  # the compiled MAgICoRe graph as a subgraph
    builder.add_node("chat", chat)
    builder.add_node("respond", respond)
    builder.add_edge(START, "router")
    builder.add_conditional_edges("router", after_router, ["magicore", "chat"])
    builder.add_edge("magicore", "respond")
    builder.add_edge("respond", END)
    builder.add_edge("chat", END)
    return builder.compile(checkpointer=checkpointer, name="agent-app")


def studio_app(config: RunnableConfig):
    """For langgraph.json: the app with the model of the run's `model` setting, else
    $MAGICORE_MODEL, else the embedded one."""
    from magicore.graphs.studio import model_for

    settings = dict((config or {}).get("configurable") or {})
    fields = {k: v for k, v in settings.items() if k in MethodConfig.model_fields and k != "calibration"}
    return build_app(model_for(settings.get("model")), reward=settings.get("reward"), config=MethodConfig(**fields))


async def run(question: str, app, *, show_progress: bool = True) -> dict:
    """Ask the app one question; print MAgICoRe's progress events on stderr as they arrive."""
    final: dict = {}
    inputs = {"messages": [HumanMessage(question)]}
    async for _namespace, mode, chunk in app.astream(inputs, stream_mode=["custom", "values"], subgraphs=True):
        if mode == "values" and not _namespace:
            final = chunk
        elif mode == "custom" and show_progress and chunk.get("type") in ("route", "review", "refinement"):
            detail = f"hard={chunk['hard']}" if chunk["type"] == "route" else f"chain {chunk.get('index', '')}"
            print(f"  magicore: {chunk['type']} ({detail})", file=sys.stderr)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An agent app with MAgICoRe as a subgraph.")
    parser.add_argument("question")
    parser.add_argument("--model", metavar="SPEC", help="model spec (default: $MAGICORE_MODEL, else 'embedded')")
    parser.add_argument("-k", type=int, default=4, help="chains MAgICoRe samples (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="refinement rounds at most (default 2)")
    parser.add_argument("--max-tokens", type=int, default=256, help="token limit per completion (default 256)")
    args = parser.parse_args(argv)

    from magicore.agents.backends import chat_model, resolve_spec

    model = chat_model(resolve_spec(cli=args.model), max_tokens=args.max_tokens)
    app = build_app(model, config=MethodConfig(k=args.k, rounds=args.rounds, max_tokens=args.max_tokens))
    final = asyncio.run(run(args.question, app))
    print(f"[{final.get('intent')}] {final['messages'][-1].content}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

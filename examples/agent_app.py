"""An agent app that embeds a MAgICoRe graph as a subgraph.

    python examples/agent_app.py "Tom has 3 apples and buys 4 more. How many does he have?"
    python examples/agent_app.py "Hello there!" --model vllm:MODEL@http://gpu:8000/v1
    python examples/agent_app.py "What is 17 * 3?" --sync      # the synchronous API

The app is a chat (`messages`). Its `router` node decides a `route` of its own ("math" or
"chat"): the same name as MAgICoRe's output key `route` (the list of its easy/hard decisions).
A compiled graph added with `add_node` would write its `route` over the app's, so the app calls
MAgICoRe from a node of its own, `magicore`, and maps the keys: `question` goes in; `answer`,
`votes` and `rounds` come back under the same names and the route decisions as `decisions`.
Called inside a node, the compiled graph is still a subgraph: it shares the app's checkpointer
(so the app's saver gets magicore's serializer), its progress events and its models' text
reach the app's stream with `subgraphs=True`, and the app's callbacks see its model calls.
Small talk is answered directly by the same chat model. Every node works with both `invoke`
and `ainvoke`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from magicore import build_graph
from magicore.graphs.config import MethodConfig

SMALL_TALK = "You are a friendly assistant. Reply in one or two short sentences."
_MATH = re.compile(
    r"\d|[+\-*/=^%]|\b(how (many|much|long|far|old)|calculate|compute|solve|sum|total|product|"
    r"times|divided|percent|average|equation|probability|integer|fraction)\b",
    re.IGNORECASE,
)


class AppState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    route: Literal["math", "chat"]  # the app's own: the same name as MAgICoRe's output key
    # from the MAgICoRe subgraph
    question: str
    answer: str | None
    votes: dict[str, float]
    rounds: int
    decisions: list[dict]  # MAgICoRe's `route`: one easy/hard decision per evaluation


def looks_like_math(text: str) -> bool:
    """A cheap router: digits, operators or math words. (A tiny model routes no better.)"""
    return bool(_MATH.search(text))


def last_user_text(messages: list[AnyMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


def build_app(model: BaseChatModel, *, reward=None, config: MethodConfig | None = None, checkpointer=None,
              context_schema: type | None = None):  # fmt: skip
    """The compiled app: router -> magicore (subgraph) -> respond, or router -> chat.

    A checkpointer of the app keeps the subgraph's state too: give it magicore's serializer,
    e.g. `InMemorySaver(serde=magicore.serializer())`, so it reads magicore's types back.
    """
    magicore = build_graph("magicore", model=model, reward=reward, config=config)

    def router(state: AppState) -> dict:
        text = last_user_text(state.get("messages") or [])
        route = "math" if looks_like_math(text) else "chat"
        return {"route": route, "question": text} if route == "math" else {"route": route}

    def after_router(state: AppState) -> Literal["magicore", "chat"]:
        return "magicore" if state["route"] == "math" else "chat"

    def from_magicore(out: dict[str, Any]) -> dict:
        return {"answer": out.get("answer"), "votes": out.get("votes") or {}, "rounds": out.get("rounds", 0),
                "decisions": [d.model_dump() for d in out.get("route") or []]}  # fmt: skip

    # The subgraph's input and output mapped, once per API: LangGraph calls `invoke` from a
    # synchronous run and `ainvoke` from an asynchronous one.
    def ask_magicore(state: AppState) -> dict:
        return from_magicore(magicore.invoke({"question": state["question"]}))

    async def aask_magicore(state: AppState) -> dict:
        return from_magicore(await magicore.ainvoke({"question": state["question"]}))

    # the model's own message goes into the state: a stream that showed it as it was written
    # (`messages` mode) knows it by its id and does not show it again
    def chat(state: AppState) -> dict:
        return {"messages": [model.invoke([SystemMessage(SMALL_TALK), *state["messages"]])]}

    async def achat(state: AppState) -> dict:
        return {"messages": [await model.ainvoke([SystemMessage(SMALL_TALK), *state["messages"]])]}

    def respond(state: AppState) -> dict:
        answer, rounds = state.get("answer"), state.get("rounds", 0)
        if answer is None:
            text = "I could not work out an answer to that."
        else:
            how = f"after {rounds} round{'s' if rounds != 1 else ''} of review and refinement" if rounds else \
                "settled by a reward-weighted vote"  # fmt: skip
            text = f"The answer is {answer} ({how})."
        return {"messages": [AIMessage(text, name="magicore")]}

    builder = StateGraph(AppState, context_schema=context_schema)
    builder.add_node("router", router)
    builder.add_node("magicore", RunnableLambda(ask_magicore, afunc=aask_magicore, name="magicore"))
    builder.add_node("chat", RunnableLambda(chat, afunc=achat, name="chat"))
    builder.add_node("respond", respond)
    builder.add_edge(START, "router")
    builder.add_conditional_edges("router", after_router, ["magicore", "chat"])
    builder.add_edge("magicore", "respond")
    builder.add_edge("respond", END)
    builder.add_edge("chat", END)
    return builder.compile(checkpointer=checkpointer, name="agent-app")


def app_for_run(config: RunnableConfig | None, *, shape_only: bool = False):
    from magicore.graphs.studio import ShapeOnlyModel, StudioSettings, model_for, settings_of

    settings = StudioSettings.model_validate(settings_of(config))
    fields = {k: v for k, v in settings.model_dump().items() if k in MethodConfig.model_fields and v is not None}
    model = ShapeOnlyModel() if shape_only else model_for(settings.model)
    reward = "const:0.5" if shape_only else settings.reward
    return build_app(model, reward=reward, config=MethodConfig(**fields), context_schema=StudioSettings)


async def studio_app(config: RunnableConfig):
    """For langgraph.json: the app with the run's `model` setting, else $MAGICORE_MODEL, else the
    embedded one; built off the server's event loop, and without models when only drawn."""
    if not ((config or {}).get("configurable") or {}).get("__is_for_execution__", True):
        return app_for_run(config, shape_only=True)
    return await asyncio.to_thread(app_for_run, config)


def progress_line(chunk: dict) -> str | None:
    """One line for MAgICoRe's progress events worth showing."""
    if chunk.get("type") == "route":
        return f"  magicore: route (hard={chunk['hard']})"
    if chunk.get("type") in ("review", "refinement"):
        return f"  magicore: {chunk['type']} (chain {chunk.get('chain_index', chunk.get('index', ''))})"
    return None


async def run(question: str, app, *, config: RunnableConfig | None = None, show_progress: bool = True,
              on_text=None) -> dict:  # fmt: skip
    """Ask the app one question (async); MAgICoRe's progress on stderr, and every model's text
    as it is written to `on_text(node, text)`."""
    final: dict = {}
    inputs = {"messages": [HumanMessage(question)]}
    async for namespace, mode, chunk in app.astream(inputs, config, stream_mode=["custom", "messages", "values"],
                                                    subgraphs=True):  # fmt: skip
        if mode == "values" and not namespace:
            final = chunk
        elif mode == "custom" and show_progress and (line := progress_line(chunk)):
            print(line, file=sys.stderr)
        elif mode == "messages" and on_text is not None:
            message, metadata = chunk
            if message.content:
                on_text(metadata.get("langgraph_node"), str(message.content))
    return final


def ask(question: str, app, *, config: RunnableConfig | None = None, show_progress: bool = True) -> dict:
    """The same with the synchronous API (`stream`), for scripts without an event loop."""
    final: dict = {}
    inputs = {"messages": [HumanMessage(question)]}
    for namespace, mode, chunk in app.stream(inputs, config, stream_mode=["custom", "values"], subgraphs=True):
        if mode == "values" and not namespace:
            final = chunk
        elif mode == "custom" and show_progress and (line := progress_line(chunk)):
            print(line, file=sys.stderr)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An agent app with MAgICoRe as a subgraph.")
    parser.add_argument("question")
    parser.add_argument("--model", metavar="SPEC", help="model spec (default: $MAGICORE_MODEL, else 'embedded')")
    parser.add_argument("-k", type=int, default=4, help="chains MAgICoRe samples (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="refinement rounds at most (default 2)")
    parser.add_argument("--max-tokens", type=int, default=256, help="token limit per completion (default 256)")
    parser.add_argument("--sync", action="store_true", help="use the synchronous API (invoke/stream)")
    args = parser.parse_args(argv)

    from magicore import chat_model
    from magicore.agents.backends import resolve_spec

    model = chat_model(resolve_spec(cli=args.model), max_tokens=args.max_tokens)
    app = build_app(model, config=MethodConfig(k=args.k, rounds=args.rounds, max_tokens=args.max_tokens))
    final = ask(args.question, app) if args.sync else asyncio.run(run(args.question, app))
    print(f"[{final.get('route')}] {final['messages'][-1].content}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

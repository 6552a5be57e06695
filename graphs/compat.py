"""How magicore's async nodes become LangGraph nodes: `graph_node` (both APIs), and Python 3.10
support for nodes that stream custom events (`with_config_context`).

`graph_node` gives LangGraph both functions of a node: the async one for `ainvoke`/`astream`,
and a synchronous one for `invoke`/`stream` (and a synchronous parent graph) that runs the same
coroutine to completion (tools/run_sync.py). Without it, `graph.invoke()` raises "No
synchronous function provided". The synchronous path runs each node to completion on a loop
that `run_sync` picks for the calling thread, so the async API stays the one to use for
throughput (connections and request limits live per loop).

LangGraph hands an async node its run config through a context variable that asyncio can only
pass into tasks from Python 3.11; on 3.10 the injected stream `writer` then fails with "Called
get_config outside of a runnable context". `with_config_context` makes a node take `config`
explicitly and sets that variable itself. On 3.11 and later it returns the node unchanged.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import RunnableConfig

from magicore.tools.run_sync import run_sync

NEEDED = sys.version_info < (3, 11)


def with_config_context(node: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    if not NEEDED or "config" in inspect.signature(node).parameters:
        return node
    from langchain_core.runnables.config import var_child_runnable_config

    async def wrapper(*args: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if config is None:  # called from another node, whose wrapper set the variable
            return await node(*args, **kwargs)
        token = var_child_runnable_config.set(config)
        try:
            return await node(*args, **kwargs)
        finally:
            var_child_runnable_config.reset(token)

    # LangGraph reads a node's parameters (to inject writer and config) and its first
    # parameter's type (its input schema) from the signature and the type hints.
    signature = inspect.signature(node)
    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RunnableConfig)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), config])
    wrapper.__wrapped__ = node  # typing.get_type_hints resolves names in the node's module
    wrapper.__annotations__ = {**node.__annotations__, "config": RunnableConfig}
    wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = node.__name__, node.__qualname__, node.__doc__
    return wrapper


def graph_node(node: Callable[..., Awaitable[Any]]) -> Any:
    """`node` (async) as a LangGraph node runnable with a synchronous path too. Its own
    coroutine stays reachable as `.afunc`."""
    from langgraph._internal._runnable import RunnableCallable  # what add_node makes of a function

    anode = with_config_context(node)

    def sync(*args: Any, **kwargs: Any) -> Any:
        return run_sync(anode(*args, **kwargs))

    # LangGraph injects `writer` and `config` by the parameters of the first function it gets
    sync.__signature__ = inspect.signature(anode)  # type: ignore[attr-defined]
    sync.__name__ = sync.__qualname__ = node.__name__
    return RunnableCallable(sync, anode, name=node.__name__, trace=False)

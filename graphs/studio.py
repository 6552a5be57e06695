"""Graph factories for LangGraph Studio and the LangGraph server (`langgraph dev`, langgraph.json).

One factory per method. The server calls it with the run's config and serves the graph it
returns, with its own checkpointer. Settings come from the run's `configurable`: `model` (a
model spec; else $MAGICORE_MODEL, else "embedded"), `reviewer_model`, `refiner_model`,
`reward` (a reward spec) and any MethodConfig field (`k`, `rounds`, `max_tokens`...).
"""

from __future__ import annotations

from functools import lru_cache

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from magicore.graphs.build import build_graph
from magicore.graphs.config import MethodConfig


@lru_cache(maxsize=16)
def model_for(spec: str | None) -> BaseChatModel:
    """The chat model of a spec (None: $MAGICORE_MODEL, else "embedded"), made once per spec for
    the server's lifetime, so the embedded model starts once."""
    from magicore.agents.backends import chat_model, resolve_spec

    return chat_model(resolve_spec(cli=spec))


def _settings(config: RunnableConfig | None) -> dict:
    return dict((config or {}).get("configurable") or {})


def graph_for_run(method: str, config: RunnableConfig | None = None):
    """The compiled graph of `method` for a run with `config`."""
    settings = _settings(config)
    fields = {name: settings[name] for name in MethodConfig.model_fields
              if name != "calibration" and settings.get(name) is not None}  # fmt: skip
    model = model_for(settings.get("model"))
    reviewer = model_for(settings["reviewer_model"]) if settings.get("reviewer_model") else None
    refiner = model_for(settings["refiner_model"]) if settings.get("refiner_model") else None
    return build_graph(method, model=model, reviewer_model=reviewer, refiner_model=refiner,
                       reward=settings.get("reward"), config=MethodConfig(**fields))  # fmt: skip


def magicore_graph(config: RunnableConfig):
    """MAgICoRe: solve, score, vote; hard questions are reviewed and refined."""
    return graph_for_run("magicore", config)


def sc_graph(config: RunnableConfig):
    """Self-Consistency: the majority answer of k samples."""
    return graph_for_run("sc", config)


def bok_graph(config: RunnableConfig):
    """Best-of-k: the answer of the sample with the highest reward."""
    return graph_for_run("bok", config)


def self_refine_graph(config: RunnableConfig):
    """Self-Refine: one draft, improved with the model's own feedback."""
    return graph_for_run("self-refine", config)

"""Graph factories for LangGraph Studio and the LangGraph server (`langgraph dev`, langgraph.json).

One factory per method. The server calls it whenever it needs the graph: to draw it and list
its schemas, to read a thread, and to execute a run, each with the run's config, and serves the
graph it returns with its own checkpointer. The run settings are the graphs' context schema
(`StudioSettings`: Studio shows them as a form; a run passes them as `context`, or in
`config.configurable` as before): `method`, `model` (a model spec; else $MAGICORE_MODEL, else
"embedded"), `reviewer_model`, `refiner_model`, `reward` (a reward spec), `k`, `rounds`,
`temperature`, `top_p`, `max_tokens`, `seed`.

Building a graph for a run makes its models, and a model spec may start the embedded model's
server or ask a server which model it serves: blocking work that the LangGraph server refuses
on its event loop (HTTP 500, `BlockingError`). So the factories are async and build in a worker
thread, and a call that is not for a run (drawing, schemas, reading a thread) gets the graph's
shape without any model at all.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ConfigDict, Field

from magicore.graphs.build import build_graph
from magicore.graphs.config import MethodConfig


class StudioSettings(BaseModel):
    """The settings of a run, shown by LangGraph Studio (defaults: the graph's method and
    magicore's defaults)."""

    model_config = ConfigDict(extra="ignore")

    method: Literal["magicore", "sc", "bok", "self-refine"] | None = Field(
        None, description="the method to run (default: the graph's own)")
    model: str | None = Field(None, description="model spec, e.g. vllm:MODEL@http://host:8000/v1 "
                                                "(default: $MAGICORE_MODEL, else embedded)")  # fmt: skip
    reviewer_model: str | None = Field(None, description="the Reviewer's model spec (default: model)")
    refiner_model: str | None = Field(None, description="the Refiner's model spec (default: model)")
    reward: str | None = Field(None, description="reward spec, e.g. verifier or prm=judge*verifier,orm=judge "
                                                 "(default: suits the model)")  # fmt: skip
    k: int | None = Field(None, ge=1, le=256, description="chains the Solver samples (default 8)")
    rounds: int | None = Field(None, ge=0, le=20, description="refinement rounds at most (default 3)")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="sampling temperature (default 0.8)")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="nucleus sampling (default 0.95)")
    max_tokens: int | None = Field(None, ge=1, description="token limit per completion (default: the server's)")
    seed: int | None = Field(None, description="sampling seed")


def model_for(spec: str | None) -> BaseChatModel:
    """The chat model of a spec (None: $MAGICORE_MODEL as it is now, else "embedded"), made once
    per resolved spec for the server's lifetime, so the embedded model starts once."""
    from magicore.agents.backends import resolve_spec

    return _model_of(resolve_spec(cli=spec))


@lru_cache(maxsize=16)
def _model_of(spec) -> BaseChatModel:
    from magicore.agents.backends import chat_model

    return chat_model(spec)


class ShapeOnlyModel(BaseChatModel):
    """Stands in for the models of a graph built only to be drawn or to list its schemas."""

    @property
    def _llm_type(self) -> str:
        return "shape-only"

    def _generate(self, *args: Any, **kwargs: Any):
        raise RuntimeError("this graph was built to be drawn, not run: a run builds its own models")


def settings_of(config: RunnableConfig | None) -> dict[str, Any]:
    """The run settings in a config's `configurable` (where the server puts a run's context)."""
    configurable = dict((config or {}).get("configurable") or {})
    return {name: configurable[name] for name in StudioSettings.model_fields if configurable.get(name) is not None}


def graph_for_run(method: str, config: RunnableConfig | None = None, *, shape_only: bool = False):
    """The compiled graph of `method` (or the settings' `method`) for a run with `config`."""
    settings = StudioSettings.model_validate(settings_of(config))
    method = settings.method or method
    fields = {name: value for name, value in settings.model_dump().items()
              if name in MethodConfig.model_fields and value is not None}  # fmt: skip
    if shape_only:
        model, reviewer, refiner = ShapeOnlyModel(), None, None
    else:
        model = model_for(settings.model)
        reviewer = model_for(settings.reviewer_model) if settings.reviewer_model else None
        refiner = model_for(settings.refiner_model) if settings.refiner_model else None
    return build_graph(method, model=model, reviewer_model=reviewer, refiner_model=refiner,
                       reward="const:0.5" if shape_only else settings.reward,
                       config=MethodConfig(**fields), context_schema=StudioSettings)  # fmt: skip


async def graph_for_server(method: str, config: RunnableConfig | None):
    """What the server gets: the shape alone unless the call is for a run (the server says so
    in `__is_for_execution__`; a server that does not is given the run's graph), built off the
    event loop."""
    for_run = ((config or {}).get("configurable") or {}).get("__is_for_execution__", True)
    if not for_run:
        return graph_for_run(method, config, shape_only=True)
    return await asyncio.to_thread(graph_for_run, method, config)


async def magicore_graph(config: RunnableConfig):
    """MAgICoRe: solve, score, vote; hard questions are reviewed and refined."""
    return await graph_for_server("magicore", config)


async def sc_graph(config: RunnableConfig):
    """Self-Consistency: the majority answer of k samples."""
    return await graph_for_server("sc", config)


async def bok_graph(config: RunnableConfig):
    """Best-of-k: the answer of the sample with the highest reward."""
    return await graph_for_server("bok", config)


async def self_refine_graph(config: RunnableConfig):
    """Self-Refine: one draft, improved with the model's own feedback."""
    return await graph_for_server("self-refine", config)

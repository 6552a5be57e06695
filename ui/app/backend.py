"""From sidebar settings to a runnable turn: chat models (one per spec per server process), the
reward spec, the method graph and the saved calibration.

Chat models are cached with `st.cache_resource`, so the embedded model's server starts once
per Streamlit server process, not on every rerun; the UI's event loop is cached the same way.
"""

from __future__ import annotations

import importlib

import streamlit as st
from langchain_core.language_models import BaseChatModel

from magicore.tools.errors import InputError
from magicore.ui.app.runner import LoopThread
from magicore.ui.app.sidebar import METHOD_LABELS, Settings
from magicore.ui.app.store import Turn


@st.cache_resource(show_spinner=False)
def ui_loop() -> LoopThread:
    """The event loop every run of this server process uses (see runner.py)."""
    return LoopThread()


def load_factory(target: str) -> BaseChatModel:
    """Call `module:function` (no arguments) for a chat model."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise InputError(f"model factory '{target}': expected MODULE:FUNCTION")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise InputError(f"model factory '{target}' cannot be loaded: {error}") from error
    model = factory()
    if not isinstance(model, BaseChatModel):
        raise InputError(f"model factory '{target}' returned {type(model).__name__}, not a chat model")
    return model


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_model(spec: str, timeout: float, max_tokens: int) -> BaseChatModel:
    if spec.startswith("factory:"):
        return load_factory(spec.removeprefix("factory:"))
    from magicore.agents.backends import chat_model, parse_spec

    # a ModelSpec, not the string: chat_model would let $MAGICORE_MODEL override a string
    return chat_model(parse_spec(spec), timeout=timeout, max_tokens=max_tokens or None)


def model_label(settings: Settings, model: BaseChatModel) -> str:
    if settings.backend == "factory":
        return settings.model_spec().removeprefix("factory:")
    return (model.metadata or {}).get("magicore_spec") or settings.model_spec()


def prepare_turn(question: str, settings: Settings) -> Turn:
    """Everything a run needs; raises MagicoreError with a readable message on bad settings,
    an unreachable server or a missing embedded model."""
    import magicore.graphs.api  # noqa: F401 - the run imports it on the UI's loop; import it here first
    from magicore.agents.backends import parse_spec
    from magicore.agents.questions import check_question
    from magicore.graphs.build import build_graph
    from magicore.graphs.calibration import load_calibration
    from magicore.graphs.config import MethodConfig
    from magicore.tools.rewards.spec import check_reward_spec, default_reward_for

    question = check_question(question)
    method = settings.method
    scored = method in ("magicore", "bok")
    if settings.reward and scored:
        check_reward_spec(settings.reward)  # fails before any model starts
    spec = settings.model_spec()
    model = cached_model(spec, settings.timeout, settings.max_tokens)
    # the calibration file is keyed like the CLI's: by the normalized spec
    cal_key = str(parse_spec(spec)) if settings.backend != "factory" else spec
    from magicore.agents.prompts import detect_family

    reward = (settings.reward or default_reward_for(model, detect_family(question))) if scored else None
    try:
        config = MethodConfig(k=settings.k if method != "self-refine" else 1, rounds=settings.rounds,
                              self_refine_rounds=max(settings.rounds, 1), temperature=settings.temperature,
                              max_tokens=settings.max_tokens or None)  # fmt: skip
    except ValueError as error:
        raise InputError(str(error).splitlines()[0]) from error
    # the UI looks the saved calibration up itself (below), also for factory models, which have
    # no spec for build_graph to find it by
    graph = build_graph(method, model=model, reward=reward, config=config, checkpointer=False,
                        saved_calibration=False)
    calibration = load_calibration(cal_key, reward) if method == "magicore" else None
    meta = {"method_label": METHOD_LABELS[method], "model": model_label(settings, model), "reward": reward,
            "k": config.k, "max_rounds": settings.rounds, "temperature": settings.temperature}  # fmt: skip
    steps = 12 + 6 * max(settings.rounds, 1)  # graph super-steps: solve..route, then ~5 per round
    return Turn(question, graph, meta, calibration, recursion_limit=steps, trace=settings.tracing)

"""The sidebar: backend, method, k, rounds, temperature, reward backends, tracing, conversation.

Defaults come from the environment `magicore ui` sets (or the user's own): MAGICORE_MODEL,
MAGICORE_UI_MODEL_FACTORY, MAGICORE_UI_METHOD, MAGICORE_UI_REWARD, MAGICORE_TRACE.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st

from magicore.ui.app import tracing as app_tracing

FACTORY_ENV = "MAGICORE_UI_MODEL_FACTORY"
METHOD_ENV = "MAGICORE_UI_METHOD"
REWARD_ENV = "MAGICORE_UI_REWARD"
METHOD_LABELS = {"magicore": "MAgICoRe", "sc": "Self-Consistency", "bok": "Best-of-k", "self-refine": "Self-Refine"}
REWARD_HELP = (
    "Step (PRM) and outcome (ORM) scorers: `verifier` (re-runs the arithmetic), `judge` (the model "
    "judges itself from logprobs), `vllm:MODEL@URL`, `const:X`; combine with `*`, `+` or `&`, or name "
    "the parts: `prm=judge*verifier,orm=judge`. Empty: the default for the backend."
)


@dataclass(frozen=True)
class Settings:
    backend: str  # "embedded", "server" or "factory"
    server_url: str = ""
    model_name: str = ""
    method: str = "magicore"
    k: int = 8
    rounds: int = 3
    temperature: float = 0.8
    reward: str = ""  # empty: the backend's default
    tracing: bool = False
    timeout: float = 120.0
    max_tokens: int = 0  # 0: the backend's default

    def model_spec(self) -> str:
        if self.backend == "factory":
            return "factory:" + os.environ.get(FACTORY_ENV, "")
        if self.backend == "server":
            url = self.server_url.strip()
            return f"{self.model_name.strip()}@{url}" if self.model_name.strip() else url
        return "embedded"


def _env_backend() -> tuple[str, str, str]:
    """(backend, server URL, model name) from $MAGICORE_UI_MODEL_FACTORY / $MAGICORE_MODEL."""
    if os.environ.get(FACTORY_ENV):
        return "factory", "", ""
    spec = os.environ.get("MAGICORE_MODEL", "").strip()
    if not spec or spec.startswith("embedded"):
        return "embedded", "", ""
    try:
        from magicore.agents.backends import parse_spec

        parsed = parse_spec(spec)
    except ValueError:
        return "embedded", "", ""
    return "server", parsed.base_url or "", parsed.model or ""


def render_sidebar() -> Settings:
    backend0, url0, model0 = _env_backend()
    options = ["embedded", "server"] + (["factory"] if os.environ.get(FACTORY_ENV) else [])
    labels = {"embedded": "Embedded (SmolLM2-135M)", "server": "OpenAI-compatible server",
              "factory": f"Python factory ({os.environ.get(FACTORY_ENV, '')})"}  # fmt: skip
    method0 = os.environ.get(METHOD_ENV, "magicore")
    with st.sidebar:
        st.header("Settings")
        backend = st.radio("Backend", options, index=options.index(backend0), format_func=labels.get, key="backend")
        url, model = "", ""
        if backend == "server":
            url = st.text_input("Server URL", value=url0 or "http://localhost:8000/v1", key="server_url")
            model = st.text_input("Model name", value=model0, key="model_name",
                                  help="Empty: the model the server lists first")  # fmt: skip
        methods = list(METHOD_LABELS)
        method = st.selectbox("Method", methods, index=methods.index(method0) if method0 in methods else 0,
                              format_func=METHOD_LABELS.get, key="method")  # fmt: skip
        k = st.slider("Samples (k)", 1, 32, 8, key="k", disabled=method == "self-refine",
                      help="Chains the Solver samples")  # fmt: skip
        rounds = st.slider("Refinement rounds", 0, 10, 3, key="rounds", disabled=method in ("sc", "bok"),
                           help="MAgICoRe: review-and-refine rounds at most (T). Self-Refine: feedback rounds.")  # fmt: skip
        temperature = st.slider("Temperature", 0.0, 1.5, 0.8, 0.05, key="temperature")
        reward = st.text_input("Reward backends", value=os.environ.get(REWARD_ENV, ""), key="reward",
                               placeholder="default for the backend", help=REWARD_HELP,
                               disabled=method not in ("magicore", "bok"))  # fmt: skip
        tracing = _tracing_controls()
        with st.expander("Advanced"):
            timeout = st.number_input("Request timeout (s)", 1.0, 3600.0, 120.0, key="timeout")
            max_tokens = st.number_input("Max tokens per completion (0: default)", 0, 32768, 0, key="max_tokens")
    return Settings(backend, url, model, method, int(k), int(rounds), float(temperature), reward.strip(),
                    tracing, float(timeout), int(max_tokens))  # fmt: skip


def _tracing_controls() -> bool:
    env_exporter = os.environ.get("MAGICORE_TRACE", "").strip()
    if not app_tracing.available():
        st.toggle("Tracing", value=False, disabled=True, key="tracing", help="This magicore has no tracing module.")
        return False
    on = st.toggle("Tracing (OpenTelemetry)", value=bool(env_exporter), key="tracing")
    installed = app_tracing.installed()
    if not on:
        return False
    if installed:
        st.caption(f"Traces go to `{installed}` (set for this server process).")
        return True
    exporter = st.text_input("Exporter", value=env_exporter or "otlp", key="exporter",
                             help="`otlp` (OTEL_EXPORTER_OTLP_* settings), `console` or `jsonl:PATH`")  # fmt: skip
    try:
        app_tracing.enable(exporter)
    except Exception as error:  # noqa: BLE001 - a bad exporter is the user's to fix
        st.error(f"Tracing is off: {error}")
        return False
    return True


def render_conversation(thread_id: str, on_new) -> None:
    with st.sidebar:
        st.divider()
        st.caption(f"Conversation `{thread_id}`: bookmark this page's address to come back to it.")
        st.button("New conversation", on_click=on_new, icon=":material/add_comment:", key="new_conversation")

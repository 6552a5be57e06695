"""`build_graph`: a compiled LangGraph for any method, ready to run alone or as a subgraph.

    graph = build_graph("magicore", model=chat_model("embedded"))
    final = await graph.ainvoke({"question": "What is 17 * 3?"})

Input (`GraphInput`): {"question": str, optional "family" and "calibration"}. Output
(`GraphOutput`): `answer`, `votes`, `rounds`, `route`, `usage` (per role), `pool`, `reviews`,
`refinements`, `drafts`; nothing else reaches a parent graph. The async API (`ainvoke`,
`astream`) is the one to use; `invoke` and `stream` work too (each node then runs on an event
loop of its own). `stream_mode="custom"` yields the progress events of graphs/events.py,
`stream_mode="messages"` the models' text as it is written.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langgraph.types import RetryPolicy

from magicore.agents.refiner import Refiner
from magicore.agents.reviewer import Reviewer
from magicore.agents.self_refiner import SelfRefiner
from magicore.agents.solver import Solver, SolverConfig
from magicore.graphs.baselines import best_of_k, self_consistency, self_refine
from magicore.graphs.config import MethodConfig
from magicore.graphs.magicore import magicore_graph
from magicore.tools.errors import InputError, ModelError
from magicore.tools.rewards.base import RewardModel

Method = Literal["magicore", "sc", "bok", "self-refine"]
METHODS: tuple[str, ...] = ("magicore", "sc", "bok", "self-refine")
ALIASES = {"self-consistency": "sc", "best-of-k": "bok", "selfrefine": "self-refine", "mgc": "magicore"}


def is_transient(error: BaseException) -> bool:
    """Retry a node only for errors that another try may fix (timeouts, 5xx, 429)."""
    return isinstance(error, ModelError) and error.transient


def default_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=2, initial_interval=1.0, retry_on=is_transient)


def normalize_method(method: str) -> str:
    name = ALIASES.get(method.lower(), method.lower())
    if name not in METHODS:
        raise InputError(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    return name


def resolve_reward(reward: RewardModel | str | None, judge_model: BaseChatModel, family: str | None = None) -> RewardModel:
    """The reward model to use: `reward` itself, its spec built, or the default for the model
    (and for the task family: the code family runs programs on the question's examples)."""
    from magicore.tools.rewards.spec import build_reward, default_reward_for

    if isinstance(reward, RewardModel):
        return reward
    from magicore.agents.backends import chat_model, parse_spec

    return build_reward(reward or default_reward_for(judge_model, family), judge_model=judge_model,
                        make_model=lambda spec: chat_model(parse_spec(spec)),  # `judge:MODELSPEC`
                        family=family)  # fmt: skip


def chat_model_of(model, what: str = "model", *, required: bool = True) -> BaseChatModel | None:
    """A LangChain chat model as given, or made from a model spec string as `--model` takes
    ("embedded", "MODEL@URL", ...); anything else is an InputError saying what is expected."""
    if isinstance(model, BaseChatModel):
        return model
    if model is None and not required:
        return None
    if isinstance(model, str):
        from magicore.agents.backends import resolve_spec

        return _model_for_spec(resolve_spec(python_arg=model))
    got = "nothing (None)" if model is None else f"a {type(model).__name__}"
    raise InputError(f"{what} must be a LangChain chat model or a model spec such as 'embedded' or "
                     f"'MODEL@http://HOST:PORT/v1', got {got}")  # fmt: skip


@lru_cache(maxsize=32)
def _model_for_spec(spec) -> BaseChatModel:
    """One chat model per resolved spec for the process: what it learns of its server (whether
    `n` is honoured) and its embedded server outlive one `solve("...", model="spec")` call."""
    from magicore.agents.backends import chat_model

    return chat_model(spec)


def build_graph(
    method: str = "magicore",
    *,
    model: BaseChatModel | str,
    reviewer_model: BaseChatModel | str | None = None,
    refiner_model: BaseChatModel | str | None = None,
    reward: RewardModel | str | None = None,
    config: MethodConfig | None = None,
    checkpointer=None,
    retry: RetryPolicy | None = None,
    reviewer_tools: bool = False,
    name: str | None = None,
    interrupt_before: list[str] | None = None,
    saved_calibration: bool = True,
    solver: Solver | None = None,
    context_schema: type | None = None,
    family: str | None = None,
):
    """Compile the graph of `method` ("magicore", "sc", "bok" or "self-refine").

    Args:
        model: the Solver's chat model, or a model spec string (as `--model` takes), and
            every other role's unless given. Self-Refine uses
            this one model for drafts, feedback and revisions (reviewer_model and refiner_model
            are MAgICoRe's).
        reward: a RewardModel or a reward spec string (see magicore.tools.rewards.spec); the
            default suits the model (the execution verifier alone for the embedded model).
        checkpointer: any LangGraph checkpointer (InMemorySaver, SqliteSaver...).
        reviewer_tools: let a tool-calling Reviewer run code in the sandbox itself.
        interrupt_before: node names to pause before (needs a checkpointer); batch runs pause
            MAgICoRe before "route" to compute the batch's calibration first.
        saved_calibration: MAgICoRe without `config.calibration` uses the calibration `magicore
            calibrate` saved for this (model spec, reward spec) when there is one; False, or no
            such file, leaves the fallback (each question's own chains). A `calibration` in the
            input state still comes first.
        solver: the Solver to use instead of one sampling from `model` (paired benchmark runs
            replay stored chains through one).
        context_schema: the compiled graph's LangGraph context schema (what LangGraph Studio
            shows as a run's settings; graphs/studio.py). The nodes do not read it.
        family: the task family the graph will mostly see; it only picks the default reward
            (`execution` in place of `verifier` for code). The family of each run still comes
            from the input state, or is guessed from the question.
    """
    method = normalize_method(method)
    model = chat_model_of(model)
    reviewer_model = chat_model_of(reviewer_model, "reviewer_model", required=False)
    refiner_model = chat_model_of(refiner_model, "refiner_model", required=False)
    config = config or MethodConfig()
    retry = retry or default_retry()
    solver = solver or Solver(model, SolverConfig(k=config.k, temperature=config.temperature, top_p=config.top_p,
                                        max_tokens=config.max_tokens, seed=config.seed))  # fmt: skip
    if method == "sc":
        graph = self_consistency(solver, config, retry)
    elif method == "bok":
        graph = best_of_k(solver, resolve_reward(reward, model, family), config, retry)
    elif method == "self-refine":
        # Self-Refine is one model critiquing and revising its own drafts: the Solver's model.
        agent = SelfRefiner(model, temperature=config.temperature, top_p=config.top_p,
                            max_tokens=config.max_tokens)  # fmt: skip
        graph = self_refine(solver, agent, config, retry)
    else:
        if saved_calibration and config.calibration is None:
            found = find_saved_calibration(model, reward, family)
            config = config.model_copy(update={"calibration": found}) if found else config
        graph = _magicore(solver, model, reviewer_model, refiner_model, reward, config, retry, reviewer_tools, family)
    if context_schema is not None:
        graph.context_schema = context_schema  # StateGraph keeps it as given; compile passes it on
    return graph.compile(checkpointer=checkpointer, name=name or f"magicore-{method}",
                         interrupt_before=interrupt_before)


def find_saved_calibration(model: BaseChatModel, reward: RewardModel | str | None, family: str | None = None):
    """The calibration saved for the model's spec and the reward spec, or None (a model not made
    by `chat_model`, or a RewardModel object, has no spec to look it up by)."""
    from magicore.graphs.calibration import load_calibration
    from magicore.tools.rewards.spec import default_reward_for

    metadata = model.metadata or {}
    spec = metadata.get("magicore_spec")
    if not spec or isinstance(reward, RewardModel):
        return None
    return load_calibration(spec, reward or default_reward_for(model, family))


def _magicore(solver, model, reviewer_model, refiner_model, reward, config, retry, reviewer_tools, family=None):
    from magicore.graphs.evidence import VerifierEvidence, find_verifier
    from magicore.tools.rewards.verifier import ExecutionVerifier

    params = dict(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens)
    tools = ()
    if reviewer_tools:
        from magicore.tools.sandbox_tool import PythonSandboxTool

        tools = (PythonSandboxTool(),)
    reviewer = Reviewer(reviewer_model or model, threshold=config.review_threshold, tools=tools, **params)
    refiner = Refiner(refiner_model or model, **params)
    reward_model = resolve_reward(reward, model, family)
    # One verifier for scores and evidence, so the Reviewer reuses the checks the score node ran.
    verifier = find_verifier(reward_model) or ExecutionVerifier()
    return magicore_graph(solver, reviewer, refiner, reward_model, config, retry,
                          evidence=VerifierEvidence(verifier))  # fmt: skip

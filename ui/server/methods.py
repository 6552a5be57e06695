"""From a request to a runnable method: the model name picks the method (and optionally the
underlying model), extra body fields tune it within the server's limits, and compiled graphs
are reused across requests with the same settings.

    magicore              MAgICoRe            magicore-sc            Self-Consistency
    magicore-bok          Best-of-k           magicore-self-refine   Self-Refine
    NAME/MODEL            the same method on MODEL, another model the upstream server serves
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel

from magicore.graphs.config import MethodConfig
from magicore.ui.server.errors import APIError
from magicore.ui.server.schema import ChatRequest

#: model name -> method
METHODS = {"magicore": "magicore", "magicore-sc": "sc", "magicore-bok": "bok", "magicore-self-refine": "self-refine"}
SCORED = ("magicore", "bok")
#: A request's reward spec may use these backends only: the others name servers (a client must
#: not make this server call hosts of its choosing) or another model (the operator's budget).
REQUEST_REWARD_TERMS = ("verifier", "judge", "const:")
MODEL_LIST_TTL = 60.0
GRAPH_CACHE = 64


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for, and on runs at once."""

    max_runs: int = 32
    max_k: int = 16
    max_rounds: int = 5
    max_question_chars: int = 20_000
    max_body_bytes: int = 1 << 20
    default_k: int = 8


@dataclass
class Roles:
    """The chat models one run uses, and the spec that names them."""

    solver: BaseChatModel
    reviewer: BaseChatModel
    refiner: BaseChatModel
    spec: str


@dataclass
class Plan:
    """Everything a run needs."""

    name: str  # the model name the client asked for, echoed back
    method: str
    graph: Any
    config: MethodConfig
    reward: str | None
    model_spec: str


def model_name(model: BaseChatModel) -> str:
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or "model")


def split_name(name: str) -> tuple[str, str | None]:
    """(method, underlying model or None) for a model name; a 400 for an unknown one."""
    head, slash, tail = name.strip().partition("/")
    method = METHODS.get(head.lower())
    if method is None or (slash and not tail.strip()):
        raise APIError(400, f"unknown model '{name}': use one of {', '.join(METHODS)}, optionally followed by "
                            "/MODEL (GET /v1/models lists them)", code="model_not_found", param="model")  # fmt: skip
    return method, tail.strip() or None


def check_request_reward(spec: str) -> str:
    """A reward spec a request may choose: checked like `--reward`, and naming no server or model."""
    from magicore.tools.errors import InputError
    from magicore.tools.rewards.spec import check_reward_spec, parse_reward_spec

    try:
        check_reward_spec(spec)
        (steps, _), (outcome, _) = parse_reward_spec(spec)
    except InputError as error:
        raise APIError(400, f"reward: {error}", code="invalid_reward", param="reward") from None
    for term in steps + outcome:
        if not (term == "verifier" or term == "judge" or term.startswith("const:")):
            raise APIError(400, f"reward: a request may use verifier, judge and const:X; '{term}' names a "
                                "model or server, which only the server's --reward may do",
                           code="invalid_reward", param="reward")  # fmt: skip
    return spec.strip()


def method_config(req: ChatRequest, method: str, limits: Limits) -> MethodConfig:
    """The method's settings from the request, defaults where it says nothing; a 400 naming the
    field for a value beyond the server's limits."""
    if req.k is not None and req.k > limits.max_k:
        raise APIError(400, f"k is {req.k}; this server samples at most {limits.max_k} chains per request",
                       code="limit_exceeded", param="k")  # fmt: skip
    if req.rounds is not None and req.rounds > limits.max_rounds:
        raise APIError(400, f"rounds is {req.rounds}; this server runs at most {limits.max_rounds} rounds",
                       code="limit_exceeded", param="rounds")  # fmt: skip
    values: dict[str, Any] = {"k": 1 if method == "self-refine" else (req.k or limits.default_k)}
    if req.rounds is not None:
        values.update(rounds=req.rounds, self_refine_rounds=max(req.rounds, 1))
    for field in ("temperature", "top_p", "seed"):
        if getattr(req, field) is not None:
            values[field] = getattr(req, field)
    if req.max_completion_tokens or req.max_tokens:
        values["max_tokens"] = req.max_completion_tokens or req.max_tokens
    return MethodConfig(**values)


class Engine:
    """The server's models and a cache of compiled graphs.

    Args:
        roles: the models the server was started with (per role) and their spec.
        reward: the reward spec in effect when a request names none.
    """

    def __init__(self, roles: Roles, reward: str, *, timeout: float = 120.0, limits: Limits | None = None):
        self.roles = roles
        self.reward = reward
        self.timeout = timeout
        self.limits = limits or Limits()
        self._others: dict[str, Roles] = {}
        self._served: tuple[float, list[str]] = (0.0, [])
        self._graphs: OrderedDict[tuple, Any] = OrderedDict()

    @property
    def underlying(self) -> str:
        return model_name(self.roles.solver)

    async def served_models(self) -> list[str]:
        """The models the upstream server lists (cached for a minute); the configured one first."""
        stamp, names = self._served
        if time.monotonic() - stamp > MODEL_LIST_TTL:
            names = []
            base_url = getattr(self.roles.solver, "openai_api_base", None)
            if base_url:
                from magicore.agents.backends import list_served_models
                from magicore.tools.errors import MagicoreError

                secret = getattr(self.roles.solver, "openai_api_key", None)
                key = secret.get_secret_value() if secret is not None else "not-needed"
                try:
                    names = await asyncio.to_thread(list_served_models, str(base_url).rstrip("/"), key, 10.0)
                except MagicoreError:
                    names = []  # the configured model still works; the list is a convenience
            self._served = (time.monotonic(), names)
        return [self.underlying] + [n for n in names if n != self.underlying]

    async def roles_for(self, underlying: str | None) -> Roles:
        if underlying is None or underlying == self.underlying:
            return self.roles
        if underlying in self._others:
            return self._others[underlying]
        if underlying not in await self.served_models():
            raise APIError(400, f"the upstream server does not serve '{underlying}'; GET /v1/models lists the "
                                "models this server can use", code="model_not_found", param="model")  # fmt: skip
        from magicore.agents.backends import chat_model, parse_spec

        base = parse_spec(self.roles.spec)
        model = chat_model(type(base)(base.provider, underlying, base.base_url), timeout=self.timeout)
        self._others[underlying] = roles = Roles(model, model, model, str(model.metadata["magicore_spec"]))
        return roles

    async def plan(self, req: ChatRequest) -> Plan:
        method, underlying = split_name(req.model)
        config = method_config(req, method, self.limits)
        if req.reward is not None and method not in SCORED:
            raise APIError(400, f"reward: {req.model} does not score chains; reward applies to magicore and "
                                "magicore-bok", code="invalid_reward", param="reward")  # fmt: skip
        reward = (check_request_reward(req.reward) if req.reward else self.reward) if method in SCORED else None
        roles = await self.roles_for(underlying)
        return Plan(req.model, method, self.graph(method, roles, reward, config), config, reward, roles.spec)

    def graph(self, method: str, roles: Roles, reward: str | None, config: MethodConfig):
        """The compiled graph for these settings, compiled once (the last GRAPH_CACHE are kept)."""
        from magicore.graphs.build import build_graph

        key = (method, id(roles), reward, config.model_dump_json())
        graph = self._graphs.get(key)
        if graph is None:
            graph = build_graph(method, model=roles.solver, reviewer_model=roles.reviewer,
                                refiner_model=roles.refiner, reward=reward, config=config)  # fmt: skip
            self._graphs[key] = graph
            while len(self._graphs) > GRAPH_CACHE:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        return graph

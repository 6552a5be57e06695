"""Turning command-line options into models, a reward spec and a method configuration."""

from __future__ import annotations

from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel


@dataclass
class Runtime:
    model: BaseChatModel
    reviewer_model: BaseChatModel
    refiner_model: BaseChatModel
    model_spec: str
    reward_spec: str


def runtime_from_args(args, family: str | None = None) -> Runtime:
    """Models per role (each defaulting to --model) and the reward spec in effect (the default
    suits the task `family`: programs run on their examples for code)."""
    from magicore.agents.backends import chat_model, resolve_spec
    from magicore.tools.rewards.spec import check_reward_spec, default_reward_for

    if args.reward:
        check_reward_spec(args.reward)  # a bad spec fails here, before any model starts
    if getattr(args, "trace", None) or getattr(args, "trace_content", False):
        from magicore.graphs.tracing import setup_tracing

        setup_tracing(args.trace, capture_content=args.trace_content or None)
    timeout = args.timeout
    cache: dict[str, BaseChatModel] = {}

    def make(cli_value: str | None) -> tuple[BaseChatModel, str]:
        spec = resolve_spec(cli=cli_value)
        key = str(spec)
        if key not in cache:
            cache[key] = chat_model(spec, timeout=timeout, max_tokens=getattr(args, "max_tokens", None))
        return cache[key], key

    solver, solver_spec = make(getattr(args, "solver_model", None) or args.model)
    reviewer, _ = make(getattr(args, "reviewer_model", None) or args.model)
    refiner, _ = make(getattr(args, "refiner_model", None) or args.model)
    reward_spec = args.reward or default_reward_for(solver, family)
    return Runtime(solver, reviewer, refiner, solver_spec, reward_spec)

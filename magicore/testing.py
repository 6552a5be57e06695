"""Fakes for testing code that embeds magicore, without a model: the same ones magicore's own
test suite uses.

    from magicore import build_graph
    from magicore.testing import FakeAnswerReward, RoleScriptedModel, solution

    model = RoleScriptedModel({"solver": lambda n, _messages: solution("8")})
    graph = build_graph("sc", model=model, reward=FakeAnswerReward({"8": (0.9, 0.9)}))

`RoleScriptedModel` answers each role (Solver, Reviewer, Refiner, Self-Refine's feedback and
revision, "other" for anything else) from its own script and records the calls;
`ScriptedFakeChatModel` answers from a list or a function; `FakeAnswerReward` scores a chain by
its answer. The fake models stream word by word when a run asks for it (LangGraph's `messages`
mode), so streaming code is testable too.
"""

from __future__ import annotations

from magicore.agents.fake import RoleScriptedModel, ScriptedFakeChatModel, role_of, solution
from magicore.tools.rewards.fake import FakeAnswerReward

__all__ = ["FakeAnswerReward", "RoleScriptedModel", "ScriptedFakeChatModel", "role_of", "solution"]

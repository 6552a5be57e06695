"""Scripted fakes for exact graph tests: the ones magicore publishes as `magicore.testing`."""

from __future__ import annotations

from magicore.testing import FakeAnswerReward, RoleScriptedModel, solution
from magicore.testing import role_of as fake_role_of

__all__ = ["FakeAnswerReward", "RoleScriptedModel", "role_of", "solution"]


def role_of(messages) -> str:
    return fake_role_of(str(messages[0].content))

"""A scripted fake chat model for exact tests of magicore's logic and of apps that embed it.

`ScriptedFakeChatModel` answers from a list of texts (used in turn) or a function of the
request, counts tokens as whitespace-separated words, records every request, and can behave
like a server that ignores `n` (llama.cpp, Ollama) or one that honours it (vLLM, OpenAI).
It never calls a real model.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

#: A script entry: the completion text, an AIMessage (e.g. with tool calls), or an exception to
#: raise for that request.
Reply = str | AIMessage | BaseException
Responder = Callable[[list[BaseMessage], int], Reply]


class ScriptedFakeChatModel(BaseChatModel):
    """Fake chat model answering from a script.

    Args:
        responses: texts returned in turn (the last one repeats), or
        respond: a function `(messages, index) -> text or exception`, index counting completions.
        honours_n: return n choices for a request with n > 1 (False: one, like llama.cpp).
        delay: seconds each request takes (asyncio.sleep in async calls).
        logprob: a function `(text) -> probability` giving the first token's probability, to
            fake `logprobs` answers for judge tests; absent, no logprobs are returned.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    responses: Sequence[Any] = Field(default_factory=list)  # Reply items; not validated (exceptions)
    respond: Responder | None = None
    honours_n: bool = True
    delay: float = 0.0
    logprob: Callable[[str], float] | None = None
    model: str = "scripted-fake"
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    requests: list[dict[str, Any]] = Field(default_factory=list)
    _counter: Any = PrivateAttr(default_factory=itertools.count)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _next(self, messages: list[BaseMessage]) -> Reply:
        with self._lock:
            index = next(self._counter)
        if self.respond is not None:
            return self.respond(messages, index)
        if not self.responses:
            return ""
        return self.responses[min(index, len(self.responses) - 1)]

    def _result(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        n = int(kwargs.get("n") or 1)
        self.requests.append({"messages": messages, **kwargs})
        count = n if self.honours_n else 1
        generations, out_tokens = [], 0
        for _ in range(count):
            reply = self._next(messages)
            if isinstance(reply, BaseException):
                raise reply
            message = reply if isinstance(reply, AIMessage) else AIMessage(content=reply)
            text = str(message.content)
            out_tokens += len(text.split())
            info: dict[str, Any] = {"finish_reason": "tool_calls" if message.tool_calls else "stop"}
            if self.logprob is not None and kwargs.get("logprobs"):
                info["logprobs"] = {"content": _fake_logprobs(text, self.logprob(text))}
            generations.append(ChatGeneration(message=message, generation_info=info))
        in_tokens = sum(len(str(m.content).split()) for m in messages)
        usage = {"prompt_tokens": in_tokens, "completion_tokens": out_tokens}
        return ChatResult(generations=generations, llm_output={"token_usage": usage, "model_name": self.model})

    def _combine_llm_outputs(self, llm_outputs: list[dict | None]) -> dict:
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for output in llm_outputs:
            for key in usage:
                usage[key] += ((output or {}).get("token_usage") or {}).get(key, 0)
        return {"token_usage": usage, "model_name": self.model}

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        if self.delay:
            import time

            time.sleep(self.delay)
        return self._result(messages, kwargs)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._result(messages, kwargs)

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs) -> AsyncIterator[ChatGenerationChunk]:
        """One completion, word by word (LangChain streams a call when a handler asks for it,
        e.g. LangGraph's `messages` mode); the last chunk carries the usage and finish reason."""
        if self.delay:
            await asyncio.sleep(self.delay)
        message = self._result(messages, {**kwargs, "stream": True}).generations[0].message
        words = str(message.content).split(" ")
        for i, word in enumerate(words):
            chunk = AIMessageChunk(content=word if i == len(words) - 1 else word + " ")
            yield ChatGenerationChunk(message=chunk)
        calls = [{"name": c["name"], "args": json.dumps(c["args"]), "id": c.get("id"), "index": i}
                 for i, c in enumerate(message.tool_calls)]  # fmt: skip
        in_tokens = sum(len(str(m.content).split()) for m in messages)
        out_tokens = len(str(message.content).split())
        last = AIMessageChunk(content="", tool_call_chunks=calls, usage_metadata={
            "input_tokens": in_tokens, "output_tokens": out_tokens, "total_tokens": in_tokens + out_tokens})  # fmt: skip
        info = {"finish_reason": "tool_calls" if calls else "stop", "model_name": self.model}
        yield ChatGenerationChunk(message=last, generation_info=info)


def _fake_logprobs(text: str, probability: float) -> list[dict[str, Any]]:
    import math

    first = (text.split() or [""])[0]
    p = min(max(probability, 1e-9), 1 - 1e-9)
    other = "No" if first.lower().startswith("yes") else "Yes"
    return [
        {
            "token": first,
            "logprob": math.log(p),
            "top_logprobs": [
                {"token": first, "logprob": math.log(p)},
                {"token": other, "logprob": math.log(1 - p)},
            ],
        }
    ]


def role_of(system_prompt: str) -> str:
    """Which of magicore's prompts a system message comes from: "solver", "reviewer",
    "refiner", "feedback" or "revise" (Self-Refine's two), or "other" (an LLM judge, say).
    Scripted models use it to answer each role differently."""
    checks = (("step-by-step feedback", "reviewer"), ("fix the errors", "refiner"),
              ("review your own solution", "feedback"), ("improve your own solution", "revise"),
              ("problem solver", "solver"), ("mathematician", "solver"))  # fmt: skip
    return next((role for marker, role in checks if marker in system_prompt), "other")



def solution(answer: str) -> str:
    """A two-step solution ending in `\\boxed{answer}`, as a scripted Solver or Refiner writes it."""
    return f"Step 1: I think hard.\nStep 2: So it is {answer}.\nThe answer is \\boxed{{{answer}}}."


class RoleScriptedModel(ScriptedFakeChatModel):
    """A fake chat model that answers each of magicore's roles from its own script.

    `script[role]` is a function `(call number for that role, messages) -> reply`, the role
    being what `role_of` reads from the system prompt ("solver", "reviewer", "refiner",
    "feedback", "revise", or "other" for anything else: an LLM judge, your app's own prompts).
    `calls(role)` lists the messages each call of that role received.

        model = RoleScriptedModel({"solver": lambda n, _m: solution("8"),
                                   "other": lambda n, _m: "Hello!"})
    """

    def __init__(self, script: dict[str, Callable[[int, list[BaseMessage]], Reply]], **kwargs: Any):
        counters: dict[str, int] = {}
        calls: dict[str, list] = {}
        lock = threading.Lock()

        def respond(messages: list[BaseMessage], _index: int) -> Reply:
            role = role_of(str(messages[0].content)) if messages else "other"
            with lock:
                n = counters.get(role, 0)
                counters[role] = n + 1
                calls.setdefault(role, []).append(messages)
            if role not in script:
                raise KeyError(f"the script has no replies for the {role} role")
            return script[role](n, messages)

        super().__init__(respond=respond, **kwargs)
        object.__setattr__(self, "_calls", calls)

    def calls(self, role: str) -> list[list[BaseMessage]]:
        return self._calls.get(role, [])

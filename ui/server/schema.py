"""The body of `POST /v1/chat/completions` (validated with pydantic) and the bodies the server
sends back: a chat completion, stream chunks, the model list.

Fields OpenAI clients send that magicore has no use for (`tools`, `logprobs`, `user`...) are
accepted and ignored, so any client works unchanged. magicore's own settings are extra body
fields: `k`, `rounds`, `reward`, `temperature`, `seed`, and `conversation_id`. magicore's facts
about a run travel in the extra `magicore` field of the response, which standard clients ignore.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONVERSATION_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text; only text parts are understood."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        kinds = {part.type for part in self.content} - {"text"}
        if kinds:
            from magicore.ui.server.errors import APIError

            raise APIError(400, f"only text content is understood, not {', '.join(sorted(kinds))}",
                           code="unsupported_content", param="messages")  # fmt: skip
        return "\n".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """A chat completion request; bounds that depend on the server's limits are checked later."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=300)
    messages: list[Message] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="one answer per request: the method itself samples k chains")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    # magicore's own settings
    k: int | None = Field(None, ge=1, description="chains to sample")
    rounds: int | None = Field(None, ge=0, description="refinement rounds at most")
    reward: str | None = Field(None, min_length=1, max_length=500, description="reward spec (no servers)")
    conversation_id: str | None = Field(None, pattern=CONVERSATION_ID)
    store: bool = Field(True, description="keep the turn in the conversation's history")

    @field_validator("n", mode="before")
    @classmethod
    def _none_is_one(cls, value: Any) -> Any:
        return 1 if value is None else value

    @field_validator("stream", "store", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any, info) -> Any:
        return (info.field_name == "store") if value is None else value


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_block(result) -> dict[str, int]:
    return {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens,
            "total_tokens": result.input_tokens + result.output_tokens}  # fmt: skip


def completion(cid: str, model: str, content: str, result, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
                     "logprobs": None}],
        "usage": usage_block(result),
        "magicore": facts,
    }  # fmt: skip


def chunk(cid: str, model: str, created: int, delta: dict[str, Any] | None = None, *,
          finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                         "logprobs": None}]  # fmt: skip
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices,
            **extra}  # fmt: skip


def model_list(ids: list[str], created: int) -> dict[str, Any]:
    data = [{"id": i, "object": "model", "created": created, "owned_by": "magicore"} for i in ids]
    return {"object": "list", "data": data}

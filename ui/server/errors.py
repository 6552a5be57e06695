"""Failures as OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` and the
HTTP status a client library maps to its exception types (400, 401, 404, 413, 429, 502, 504).
A model server that answered 429 or 503 gives the client the same status (and its Retry-After),
so the client backs off instead of taking the server for broken (502).

The message is one sentence a person can act on; the server never sends a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import math

from starlette.responses import JSONResponse

from magicore.tools.errors import InputError, MagicoreError, ModelError, SetupError

log = logging.getLogger("magicore.serve")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
          500: "server_error", 502: "upstream_error", 503: "server_error", 504: "upstream_timeout"}  # fmt: skip


class APIError(Exception):
    """An error the server answers with: status, one-sentence message, OpenAI's fields."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}  # fmt: skip

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def is_timeout(error: BaseException) -> bool:
    """Whether a model failure was a timeout (HTTP 504) rather than another failure (502)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (TimeoutError, asyncio.TimeoutError)) or type(current).__name__ == "APITimeoutError":
            return True
        current = current.__cause__ or current.__context__
    text = str(error)
    return "timed out" in text or "did not answer within" in text


def from_exception(error: BaseException) -> APIError:
    """The APIError for anything a run raised."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, InputError):
        return APIError(400, _sentence(error), code="invalid_request")
    if isinstance(error, ModelError):
        if getattr(error, "status", None) in (429, 503):  # the model server says "later": so do we
            after = getattr(error, "retry_after", None)
            headers = {"Retry-After": str(max(1, math.ceil(after)))} if after is not None else None
            return APIError(error.status, _sentence(error), code="upstream_busy", headers=headers)
        if is_timeout(error):
            return APIError(504, _sentence(error), code="upstream_timeout")
        return APIError(502, _sentence(error), code="upstream_error")
    if isinstance(error, SetupError):
        return APIError(500, _sentence(error), code="setup_error")
    if isinstance(error, MagicoreError):
        return APIError(500, _sentence(error), code="internal_error")
    from langgraph.errors import GraphRecursionError

    if isinstance(error, GraphRecursionError):
        return APIError(400, "the run took more graph steps than allowed; ask for fewer rounds",
                        code="too_many_steps")  # fmt: skip
    log.error("a run failed unexpectedly", exc_info=error)
    return APIError(500, f"the server failed unexpectedly ({type(error).__name__}); its log has the details",
                    code="internal_error")  # fmt: skip


def _sentence(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[0].upper() + text[1:] if text[0].islower() else text

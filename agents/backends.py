"""Model specs and the chat-model factory: one string picks the backend every role talks to.

Spec grammar (documented in README.md):

    embedded                         Qwen2.5-Coder-1.5B-Instruct, served locally by llama.cpp
    embedded:smollm2                 SmolLM2-135M-Instruct (small and fast; for tests)
    embedded:/path/to/model.gguf     any GGUF chat model, served locally by llama.cpp
    openai:MODEL                     the OpenAI API (key from OPENAI_API_KEY)
    [PROVIDER:]MODEL@URL             any OpenAI-compatible server at URL (vLLM, llama.cpp, Ollama,
                                     SGLang); PROVIDER (vllm, llamacpp, ollama, sglang, openai)
                                     names it in traces and picks its in-flight bound (INFLIGHT)
    [PROVIDER:]URL                   the same, using the one model the server lists
    [PROVIDER:]MODEL@URL,URL,...     one model served by several replicas: each request goes to the
                                     least-busy replica that is up (agents/replicas.py)

The spec comes from the CLI's `--model`, else the MAGICORE_MODEL environment variable, else the
Python argument, else "embedded". The API key comes from MAGICORE_API_KEY, else OPENAI_API_KEY.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from magicore.agents.sdk_client import sdk_async_client
from magicore.agents.transport import OpenAICompatibleChat
from magicore.tools.errors import InputError, ModelError

DEFAULT_SPEC = "embedded"
#: Tokens per completion unless --max-tokens says otherwise: a model that never stops (or a
#: server that ignores the limit's absence) must not write megabytes.
DEFAULT_MAX_TOKENS = {"embedded": 1024, "server": 4096}
ENV_VAR = "MAGICORE_MODEL"
PROVIDERS = ("embedded", "openai", "vllm", "llamacpp", "ollama", "sglang", "openai-compatible")
OPENAI_URL = "https://api.openai.com/v1"
SERVER_TIMEOUT = 120.0
EMBEDDED_TIMEOUT = 900.0

Provider = Literal["embedded", "openai", "vllm", "llamacpp", "ollama", "sglang"]

#: Requests in flight per server, by kind. An HTTP 429 or 503 halves the bound, which then grows
#: back, one per answered request, to this value and never past it (tools/inflight.py). Growing
#: on the client's demand alone would hide overload: a server that queues quietly (vLLM past
#: `max_num_seqs`, llama.cpp past its slots) lets queued requests time out, since a request's
#: timeout counts from when it is sent. vLLM and SGLang batch many sequences: their bound is
#: vLLM's default `max_num_seqs` (256); other servers get 16.
INFLIGHT: dict[str, int] = {
    "vllm": 256,
    "sglang": 256,
    "openai": 16,
    "openai-compatible": 16,
    "llamacpp": 16,
    "ollama": 16,
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. `model` is None when the server is to be asked which it serves.
    `replicas` lists every server's URL when the spec names several (`base_url` is the first)."""

    provider: str
    model: str | None = None
    base_url: str | None = None
    gguf_path: str | None = None
    replicas: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """The servers of this model: the replicas, or the one base URL."""
        return self.replicas or ((self.base_url,) if self.base_url else ())

    def __str__(self) -> str:
        if self.provider == "embedded":
            return "embedded" + (f":{self.gguf_path}" if self.gguf_path else "")
        where = ",".join(self.urls)
        target = f"{self.model}@{where}" if self.model else where
        if self.provider == "openai" and self.base_url == OPENAI_URL:
            target = self.model
        return f"{self.provider}:{target}"


_URL = re.compile(r"^https?://", re.IGNORECASE)


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec string (grammar in the module docstring)."""
    raw = (spec or "").strip()
    if not raw:
        raise InputError("the model spec is empty; use 'embedded' or MODEL@URL (see README)")
    if raw == "embedded":
        return ModelSpec("embedded")
    provider, rest = None, raw
    head, sep, tail = raw.partition(":")
    if sep and head.lower() in PROVIDERS and not tail.startswith("//"):
        provider, rest = head.lower(), tail.strip()
    if provider == "embedded":
        from magicore.agents.embedded import NAMED

        if rest in NAMED:
            return ModelSpec("embedded") if rest == "default" else ModelSpec("embedded", gguf_path=rest)
        if not rest.endswith(".gguf"):
            names = ", ".join(f"embedded:{name}" for name in NAMED if name != "default")
            raise InputError(f"'{raw}': an embedded model is {names} or a path to a .gguf file")
        return ModelSpec("embedded", gguf_path=os.path.expanduser(rest))
    if _URL.match(rest):
        return _with_urls(ModelSpec(provider or "openai-compatible"), _url_list(raw, rest))
    model, at, url = rest.rpartition("@")
    if at:
        if not model or not _URL.match(url):
            raise InputError(f"'{raw}' is not a model spec: expected MODEL@http(s)://HOST:PORT/v1")
        return _with_urls(ModelSpec(provider or "openai-compatible", model), _url_list(raw, url))
    if provider == "openai":
        return ModelSpec("openai", rest, OPENAI_URL)
    raise InputError(
        f"unknown model spec '{raw}': use 'embedded', 'embedded:FILE.gguf', 'openai:MODEL', "
        "'MODEL@URL' or a server URL such as http://localhost:8000/v1"
    )


def _checked_url(url: str, raw: str) -> str:
    """The server URL without its trailing slash, or an InputError when it cannot be one."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError as e:
        raise InputError(f"'{raw}': {url} is not a valid URL ({e})") from None
    if not parts.hostname:
        raise InputError(f"'{raw}': {url} names no host")
    return url.rstrip("/")


def _url_list(raw: str, text: str) -> list[str]:
    """The comma-separated server URLs of a spec, each checked, none twice."""
    urls = [part.strip().rstrip("/") for part in text.split(",")]
    for url in urls:
        if not _URL.match(url):
            shown = url or "an empty entry"
            raise InputError(f"'{raw}': {shown} is not a server URL such as http://HOST:PORT/v1")
    urls = [_checked_url(url, raw) for url in urls]
    twice = sorted({url for url in urls if urls.count(url) > 1})
    if twice:
        raise InputError(f"'{raw}' lists {twice[0]} more than once")
    return urls


def _with_urls(spec: ModelSpec, urls: list[str]) -> ModelSpec:
    replicas = tuple(urls) if len(urls) > 1 else ()
    return ModelSpec(spec.provider, spec.model, urls[0], replicas=replicas)


def resolve_spec(cli: str | None = None, python_arg: str | ModelSpec | None = None) -> ModelSpec:
    """The spec in effect: `--model`, then $MAGICORE_MODEL, then the Python argument, then
    'embedded'. An empty `--model ""` is an error, not a request for the default."""
    if cli is not None and not cli.strip():
        return parse_spec(cli)  # raises: the spec is empty
    for candidate in (cli, os.environ.get(ENV_VAR) or None, python_arg):
        if isinstance(candidate, ModelSpec):
            return candidate
        if candidate:
            return parse_spec(candidate)
    return ModelSpec("embedded")


def api_key(spec: ModelSpec) -> str:
    key = os.environ.get("MAGICORE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    if spec.provider == "openai" and spec.base_url == OPENAI_URL and not key:
        raise InputError("the OpenAI API needs a key: set OPENAI_API_KEY")
    return key or "not-needed"


def list_served_models(base_url: str, key: str, timeout: float) -> list[str]:
    """The model ids an OpenAI-compatible server lists at /models."""
    request = urllib.request.Request(f"{base_url}/models", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        return [m["id"] for m in payload.get("data", [])]
    except urllib.error.HTTPError as e:
        raise ModelError(f"the model server at {base_url} answered HTTP {e.code} to /models") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ModelError(f"cannot reach the model server at {base_url}: {reason}") from e
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"the model server at {base_url} sent a malformed /models list") from e


def chat_model(
    spec: str | ModelSpec | None = None,
    *,
    timeout: float | None = None,
    max_retries: int = 2,
    max_tokens: int | None = None,
    max_concurrency: int | None = None,
    coalesce: bool | None = None,
) -> BaseChatModel:
    """A LangChain chat model for `spec` (resolved with `resolve_spec` when a string or None).

    The embedded backend starts its local server on first use and shares it between all models
    made here; it stops when the process exits. `metadata` on the returned model carries
    `magicore_provider`, `magicore_spec`, `magicore_max_concurrency` (the in-flight bound) and
    `magicore_inflight_adaptive`, which the rest of magicore reads; a spec with several URLs adds `magicore_replicas` and
    `magicore_replica_concurrency` (the bound per replica; `magicore_max_concurrency` is then
    that bound times the replicas).

    Args:
        timeout: seconds to wait for one response (default 120; 900 for the embedded model,
            whose chains share a CPU and can take minutes each on a slow or busy machine).
        max_tokens: tokens per completion at most (default: DEFAULT_MAX_TOKENS, 1024 for the
            embedded model and 4096 for a server).
        max_concurrency: requests in flight per server at most (default: $MAGICORE_MAX_CONCURRENCY,
            else the bound of the server's kind in `INFLIGHT`; the embedded server's slots).
            Either way HTTP 429 or 503 halves the bound for a while (tools/inflight.py;
            docs/bench.md).
        coalesce: send concurrent chat completions that differ only in their messages as one
            request to the server's `/chat/completions/batch` (agents/coalesce.py; default:
            $MAGICORE_COALESCE, else on for `vllm:` specs with one server).
    """
    spec = spec if isinstance(spec, ModelSpec) else resolve_spec(python_arg=spec)
    if spec.provider == "embedded":
        from magicore.agents.embedded import embedded_server

        server = embedded_server(spec.gguf_path)
        base_url, model, key, provider = server.base_url, server.model_name, "embedded", "llama.cpp"
        # llama-server decodes `parallel` requests together; llama-cpp-python's server answers
        # one at a time, and two in flight keep it busy without queueing requests to time out.
        concurrency = server.parallel if server.binary else 2
        max_tokens = max_tokens or DEFAULT_MAX_TOKENS["embedded"]
        timeout = timeout or EMBEDDED_TIMEOUT
    else:
        key = api_key(spec)
        timeout = timeout or SERVER_TIMEOUT
        base_url, provider = spec.base_url, spec.provider
        model = spec.model or _served_model(spec.urls, key, timeout)
        concurrency = INFLIGHT[provider]
        max_tokens = max_tokens or DEFAULT_MAX_TOKENS["server"]
    concurrency = max_concurrency or _env_concurrency() or concurrency  # a 429 or 503 still lowers it for a while
    extra_metadata = {}
    if spec.provider == "embedded":
        from magicore.agents.embedded import DEFAULT_REWARD

        if model in DEFAULT_REWARD:
            extra_metadata["magicore_default_reward"] = DEFAULT_REWARD[model]
    chat_class = ChatOpenAI if spec.base_url == OPENAI_URL else OpenAICompatibleChat
    metadata = {"magicore_provider": provider, "magicore_spec": str(spec), "magicore_max_concurrency": concurrency,
                "magicore_inflight_adaptive": True}  # fmt: skip
    extra = {}
    if len(spec.replicas) > 1:
        # the bound is per server: the model as a whole may have one bound's worth in flight on
        # every replica, and agents/replicas.py keeps each replica within its own
        # (each replica's own bound is fixed at the starting bound; the model's bound may still halve)
        metadata.update(magicore_max_concurrency=concurrency * len(spec.replicas),
                        magicore_replica_concurrency=concurrency, magicore_replicas=list(spec.replicas))  # fmt: skip
        extra["replica_urls"] = list(spec.replicas)
    coalesce = _env_flag("MAGICORE_COALESCE") if coalesce is None else coalesce
    if coalesce is None:
        coalesce = provider == "vllm"
    if chat_class is OpenAICompatibleChat and len(spec.replicas) <= 1:
        extra["coalesce"] = coalesce
    return chat_class(
        model=model,
        base_url=base_url,
        api_key=key,
        timeout=timeout,
        max_retries=max_retries,
        max_tokens=max_tokens,
        stream_usage=True,  # a streamed call (LangGraph's `messages` mode) still reports its usage
        http_async_client=sdk_async_client(),  # a 429 the SDK retries still lowers the in-flight bound
        metadata={**metadata, **extra_metadata},
        **extra,
    )


def _served_model(urls: tuple[str, ...], key: str, timeout: float) -> str:
    """The model the first answering server lists (replicas serve the same model)."""
    error: ModelError | None = None
    for url in urls:
        try:
            served = list_served_models(url, key, timeout=min(timeout, 10.0))
        except ModelError as e:
            error = error or e
            continue
        if not served:
            raise ModelError(f"the model server at {url} lists no models")
        return served[0]
    assert error is not None
    raise error


def _env_flag(name: str) -> bool | None:
    text = os.environ.get(name, "").strip().lower()
    if not text:
        return None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InputError(f"{name} must be 1 or 0, got '{text}'")


def _env_concurrency() -> int | None:
    text = os.environ.get("MAGICORE_MAX_CONCURRENCY", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"MAGICORE_MAX_CONCURRENCY must be a whole number, got '{text}'") from None
    if value < 1:
        raise InputError(f"MAGICORE_MAX_CONCURRENCY must be at least 1, got {value}")
    return value

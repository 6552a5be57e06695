"""Process and outcome reward models served by vLLM, scored over its ``/pooling`` endpoint.

vLLM serves reward models as *pooling* models (``vllm serve MODEL --runner pooling``); they do
not generate text, they return numbers per token. See docs/vllm.md for the serve commands.
What vLLM 0.32 returns, and what this client makes of it (all requests send
``use_activation: false`` so the server returns raw logits whatever its pooler defaults are, and
the probabilities are computed here, in one place):

* **Qwen2.5-Math-PRM** (``Qwen2ForProcessRewardModel``, ``prm_style="qwen-prm"``): task
  ``token_classify`` with STEP pooling returns one row ``[logit_bad, logit_good]`` per
  ``<extra_0>`` token (vLLM's ``step_tag_id``, 151651 by default, the id of ``<extra_0>`` in the
  Qwen tokenizer). Step score = softmax(row)[1], as in the model card. The prompt is the model
  card's chat: system "Please reason step by step, and put your final answer within \\boxed{}.",
  the question as user, the steps joined by ``<extra_0>`` and ending with one as assistant. It is
  sent as ``messages`` so the server applies the model's own chat template. A chat request holds
  one conversation, so a batch of chains is sent as concurrent requests on one connection pool
  (vLLM batches concurrent requests itself).
* **math-shepherd** (``LlamaForCausalLM``/``MistralForCausalLM`` served with
  ``--convert classify``, ``classifier_from_token ["-", "+"]`` and STEP pooling on the step tag
  ``ки``; ``prm_style="math-shepherd"``): the same rows, ``[logit("-"), logit("+")]`` per tag, so
  the step score is the probability of "+" among the two candidates. The prompt is plain text
  ("question Step 1: ... ки\\nStep 2: ... ки"), so a batch is one request with a list of inputs.
* **Outcome RM, token reward** (``Qwen2ForRewardModel``, e.g. Qwen2.5-Math-RM-72B,
  ``orm_style="token-reward"``): ``token_classify`` with ALL pooling returns one raw reward per
  token; the last token's reward is the solution's, and its sigmoid is the score.
* **Outcome RM, sequence classifier** (any ``*ForSequenceClassification``,
  ``orm_style="classify"``): task ``classify`` returns the logits of the last token: one logit
  gives sigmoid(logit), two give softmax(...)[1].

Without an ORM, ``score_outcome`` falls back to the PRM: the solution is split into steps
(blank-line separated paragraphs, else lines) and the last step's score is the outcome score,
since a PRM's last step judges the final answer in the context of all steps before it; a blank
solution scores 0.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any

import httpx

from ..errors import InputError, ModelError, retry_after_seconds
from ..loop_local import LoopLocal
from .base import RewardModel

QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
PRM_STYLES = ("qwen-prm", "math-shepherd")
ORM_STYLES = ("token-reward", "classify")
_DEFAULT_SEPARATOR = {"qwen-prm": "<extra_0>", "math-shepherd": "ки"}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def positive_probability(logits: Sequence[float]) -> float:
    """The probability of the positive ("good step", "+", "correct") class from raw logits.

    One logit is a binary logit (sigmoid); two are [negative, positive] (softmax, which for two
    classes is the sigmoid of their difference).
    """
    if not all(math.isfinite(x) for x in logits):
        raise ValueError(f"non-finite logits {list(logits)}")
    if len(logits) == 1:
        return _sigmoid(logits[0])
    if len(logits) == 2:
        return _sigmoid(logits[1] - logits[0])
    raise ValueError(f"expected 1 or 2 logits per score, got {len(logits)}")


def split_solution_steps(solution: str) -> list[str]:
    """Steps of a free-text solution: blank-line separated paragraphs, else non-empty lines."""
    parts = [p.strip() for p in re.split(r"\n\s*\n", solution) if p.strip()]
    if len(parts) <= 1:
        parts = [line.strip() for line in solution.splitlines() if line.strip()]
    return parts


class VLLMRewardModel(RewardModel):
    """PRM step scores and ORM outcome scores from vLLM pooling servers.

    ``base_url`` is the server root (``http://host:8001``; a trailing ``/v1`` is dropped).
    vLLM serves one model per server, so the ORM may live at its own ``orm_base_url`` (it
    defaults to ``base_url``, e.g. behind a router that dispatches on the model name). Either
    model may be None. The API key is ``api_key``, else ``$MAGICORE_VLLM_API_KEY``, else
    ``$VLLM_API_KEY`` (what ``vllm serve --api-key`` reads), else none.
    """

    def __init__(
        self,
        base_url: str,
        *,
        prm_model: str | None = None,
        orm_model: str | None = None,
        orm_base_url: str | None = None,
        prm_style: str = "qwen-prm",
        orm_style: str = "token-reward",
        step_separator: str | None = None,
        system_prompt: str = QWEN_MATH_SYSTEM,
        timeout: float = 120.0,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if prm_style not in PRM_STYLES:
            raise InputError(f"unknown PRM style {prm_style!r}; use one of {', '.join(PRM_STYLES)}")
        if orm_style not in ORM_STYLES:
            raise InputError(f"unknown ORM style {orm_style!r}; use one of {', '.join(ORM_STYLES)}")
        self.base_url = _server_root(base_url)
        self.orm_base_url = _server_root(orm_base_url or base_url)
        self.prm_model, self.orm_model = prm_model, orm_model
        self.prm_style, self.orm_style = prm_style, orm_style
        self.step_separator = step_separator or _DEFAULT_SEPARATOR[prm_style]
        self.system_prompt = system_prompt
        self.timeout = timeout
        key = api_key or os.environ.get("MAGICORE_VLLM_API_KEY") or os.environ.get("VLLM_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._transport = transport  # tests record the exchanges through their own transport
        # One client (one connection pool) per event loop: its connections belong to the loop
        # that opened them, and the synchronous wrappers run each call in a fresh loop.
        self._clients: LoopLocal[httpx.AsyncClient] = LoopLocal(
            lambda: httpx.AsyncClient(timeout=self.timeout, headers=self._headers, transport=self._transport),
            close=lambda client: client.aclose(), usable=lambda client: not client.is_closed,
        )
        self.name = "vllm(" + " + ".join(m for m in (prm_model, orm_model) if m) + ")"

    # -- transport ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._clients.close_all()

    async def _pool(self, base_url: str, body: dict[str, Any], n_inputs: int) -> list[Any]:
        """POST /pooling; return each input's ``data`` in input order, or raise ModelError."""
        url = f"{base_url}/pooling"
        what = f"the vLLM server at {base_url} (model {body.get('model')!r})"
        try:
            resp = await (await self._clients.get()).post(url, json=body)
        except httpx.TimeoutException:
            raise ModelError(f"{what} did not answer within {self.timeout:g} s.", transient=True) from None
        except httpx.ConnectError:
            raise ModelError(
                f"could not connect to {what}; check that `vllm serve` is running there.", transient=True
            ) from None
        except httpx.HTTPError as exc:
            raise ModelError(f"the request to {what} failed: {exc or type(exc).__name__}.") from None
        if resp.status_code != 200:
            status = resp.status_code
            raise ModelError(f"{what} answered HTTP {status}: {_error_text(resp)}.",
                             transient=status == 429 or status >= 500, status=status,
                             retry_after=retry_after_seconds(resp.headers))  # fmt: skip
        try:
            items = sorted(resp.json()["data"], key=lambda item: item["index"])
            data = [item["data"] for item in items]
        except (ValueError, KeyError, TypeError):
            raise ModelError(
                f"{what} returned a response that is not a vLLM pooling result: "
                f"{resp.text[:120]!r}."
            ) from None
        if len(data) != n_inputs:
            raise ModelError(f"{what} returned {len(data)} results for {n_inputs} inputs.")
        return data

    # -- process reward model ----------------------------------------------------------------

    def _prm_messages(self, question: str, steps: Sequence[str]) -> list[dict[str, str]]:
        sep = self.step_separator
        # A separator inside a step would add a score the caller did not ask for.
        body = "".join(step.replace(sep, " ").strip() + sep for step in steps)
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": question},
            {"role": "assistant", "content": body},
        ]

    def _shepherd_text(self, question: str, steps: Sequence[str]) -> str:
        tag = self.step_separator
        lines = (f"Step {i}: {s.replace(tag, ' ').strip()} {tag}" for i, s in enumerate(steps, 1))
        return f"{question} " + "\n".join(lines)

    def _step_scores(self, rows: Any, n_steps: int) -> list[float]:
        what = f"the vLLM server at {self.base_url} (model {self.prm_model!r})"
        if not isinstance(rows, list) or len(rows) != n_steps:
            got = len(rows) if isinstance(rows, list) else "no"
            raise ModelError(
                f"{what} returned {got} step scores for {n_steps} steps; check that the server's "
                f"step_tag_id is the token id of {self.step_separator!r}."
            )
        try:
            return [positive_probability([float(x) for x in row]) for row in rows]
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{what} returned step scores magicore cannot read ({exc}).") from None

    def _require(self, model: str | None, kind: str) -> str:
        if model is None:
            raise InputError(f"no {kind} model is configured for the vLLM reward backend.")
        return model

    async def ascore_steps(self, question: str, steps: Sequence[str]) -> list[float]:
        return (await self.ascore_steps_batch(question, [steps]))[0]

    async def ascore_steps_batch(
        self, question: str, chains: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """Step scores for many chains of one question: one list of probabilities per chain.

        math-shepherd chains go in one request (a list of texts); Qwen-PRM chains go as
        concurrent chat requests (one conversation per chat request in vLLM).
        """
        model = self._require(self.prm_model, "process reward")
        todo = [i for i, steps in enumerate(chains) if steps]
        scores: list[list[float]] = [[] for _ in chains]
        if not todo:
            return scores
        if self.prm_style == "math-shepherd":
            texts = [self._shepherd_text(question, chains[i]) for i in todo]
            body = {"model": model, "task": "token_classify", "use_activation": False, "input": texts}
            results = await self._pool(self.base_url, body, len(texts))
        else:
            bodies = [
                {"model": model, "task": "token_classify", "use_activation": False,
                 "messages": self._prm_messages(question, chains[i])}
                for i in todo
            ]
            answers = await asyncio.gather(*(self._pool(self.base_url, b, 1) for b in bodies))
            results = [a[0] for a in answers]
        for i, rows in zip(todo, results):
            scores[i] = self._step_scores(rows, len(chains[i]))
        return scores

    # -- outcome reward model ----------------------------------------------------------------

    async def ascore_outcome(self, question: str, solution: str) -> float:
        if self.orm_model is None:
            if self.prm_model is None:
                raise InputError("no reward model is configured for the vLLM reward backend.")
            steps = split_solution_steps(solution)
            return (await self.ascore_steps(question, steps))[-1] if steps else 0.0
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": question},
            {"role": "assistant", "content": solution},
        ]
        task = "classify" if self.orm_style == "classify" else "token_classify"
        body = {"model": self.orm_model, "task": task, "use_activation": False, "messages": messages}
        (data,) = await self._pool(self.orm_base_url, body, 1)
        try:
            # token-reward: one [reward] row per token, the last one scores the whole solution.
            logits = data[-1] if self.orm_style == "token-reward" else data
            return positive_probability([float(x) for x in logits])
        except (TypeError, ValueError, IndexError) as exc:
            raise ModelError(
                f"the vLLM server at {self.orm_base_url} (model {self.orm_model!r}) returned an "
                f"outcome score magicore cannot read ({exc})."
            ) from None


def _server_root(url: str) -> str:
    """vLLM serves /pooling at the root, not under /v1 as the chat API; accept either form."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _error_text(resp: httpx.Response) -> str:
    """vLLM's error message ({"error": {"message": ...}} or FastAPI's {"detail": ...})."""
    try:
        body = resp.json()
        err = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = msg if isinstance(msg, str) else json.dumps(msg)
    except ValueError:
        text = resp.text or resp.reason_phrase
    return " ".join(text.split())[:300].rstrip(".") or "no details"

"""Reward specs: one string picks the step (PRM) and outcome (ORM) backends and how they combine.

Grammar (the CLI's `--reward`):

    SPEC  := TERMS                         the same backends for steps and outcome
           | PART ("," PART)*              PART := ("prm" | "orm") "=" TERMS
    TERMS := TERM ("*" TERM)*              product of the scores
           | TERM ("+" TERM)*              mean of the scores
           | TERM ("&" TERM)*              minimum of the scores
    TERM  := verifier                      execution verifier (sandboxed re-computation)
           | execution                     code: the program run on the question's examples
           | judge                         the solver's model as an LLM judge (logprobs)
           | judge:MODELSPEC               another model as the judge, e.g. judge:openai:gpt-4o
           | vllm:MODEL@URL                a vLLM pooling reward model (Qwen2.5-Math-PRM style
                                           as PRM, a reward model as ORM)
           | shepherd:MODEL@URL            a math-shepherd-style PRM served by vLLM
           | const:X                       a constant score X in [0, 1] (ablations)

Example: `prm=vllm:Qwen/Qwen2.5-Math-PRM-7B@http://gpu:8001*verifier,orm=judge`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from langchain_core.language_models import BaseChatModel

from magicore.tools.errors import InputError
from magicore.tools.rewards.base import RewardModel
from magicore.tools.rewards.combine import CombinedReward, ConstantReward

#: The embedded models' judges separate right from wrong arithmetic steps weakly or not at all
#: (AUC 0.60 for Qwen2.5-Coder-1.5B, 0.44 for SmolLM2-135M; docs/embedded.md), so the execution
#: verifier carries the step-wise signal on its own.
EMBEDDED_DEFAULT = "verifier"
#: With a capable model, the judge's belief and the verifier's checks must both hold.
CAPABLE_DEFAULT = "prm=judge*verifier,orm=judge"

_OPS = {"*": "product", "+": "mean", "&": "min"}


def default_reward_spec(provider: str | None, family: str | None = None) -> str:
    """The default reward for a solver backend ("llama.cpp" is the embedded model)."""
    spec = EMBEDDED_DEFAULT if provider in ("llama.cpp", "embedded") else CAPABLE_DEFAULT
    return for_family(spec, family)


def for_family(spec: str, family: str | None) -> str:
    """A default spec adapted to a task family: for code, running the program on the question's
    examples (`execution`) takes the place of re-computing arithmetic (`verifier`), and an
    outcome part without it gets it too (the share of examples passed is the strongest outcome
    signal code has; the judge alone reads a program's behaviour only by eye)."""
    if family != "code":
        return spec
    spec = re.sub(r"\bverifier\b", "execution", spec)

    def with_execution(m: re.Match) -> str:
        part = m.group(1)
        if "execution" in part or any(op in part for op in _OPS if op != "*"):  # one operator per part
            return m.group(0)
        return f"orm={part}*execution"

    return re.sub(r"\borm=([^,]*)", with_execution, spec)


def default_reward_for(model: BaseChatModel, family: str | None = None) -> str:
    """The default reward for a chat model: what its embedded model's measurements chose
    (metadata `magicore_default_reward`, set by `chat_model`), else by its backend; for the
    code family, with `execution` in place of `verifier`."""
    metadata = model.metadata or {}
    chosen = metadata.get("magicore_default_reward")
    return for_family(chosen, family) if chosen else default_reward_spec(metadata.get("magicore_provider"), family)


def _split_terms(text: str) -> tuple[list[str], str]:
    ops = {op for op in _OPS if op in text}
    if len(ops) > 1:
        raise InputError(f"'{text}' mixes combination operators; use one of * + & per part")
    op = ops.pop() if ops else "*"
    terms = [t.strip() for t in text.split(op)]
    if not all(terms):
        raise InputError(f"'{text}' has an empty term")
    return terms, _OPS[op]


def parse_reward_spec(spec: str) -> tuple[tuple[list[str], str], tuple[list[str], str]]:
    """((step terms, rule), (outcome terms, rule)) of a spec."""
    spec = (spec or "").strip()
    if not spec:
        raise InputError("the reward spec is empty")
    parts = [p.strip() for p in spec.split(",")]
    if not any("=" in p for p in parts):
        if len(parts) > 1:
            raise InputError(f"reward spec '{spec}': name the parts, e.g. prm=verifier,orm=judge")
        terms = _split_terms(spec)
        return terms, terms
    found: dict[str, tuple[list[str], str]] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in ("prm", "orm") or key in found:
            raise InputError(f"reward spec '{spec}': expected prm=... and orm=..., got '{part}'")
        found[key] = _split_terms(value)
    missing = {"prm", "orm"} - set(found)
    if missing:
        raise InputError(f"reward spec '{spec}' has no {missing.pop()}= part")
    return found["prm"], found["orm"]


_TERM = re.compile(r"^(verifier|execution|judge|judge:.+|const:.+|(vllm|shepherd):.+@https?://\S+)$")
_UNKNOWN = (
    "unknown reward backend '{}': use verifier, execution, judge, judge:MODELSPEC, vllm:MODEL@URL, "
    "shepherd:MODEL@URL or const:X"
)


def check_reward_spec(spec: str) -> None:
    """Raise InputError for a spec that cannot be built, without building anything."""
    (steps, _), (outcome, _) = parse_reward_spec(spec)
    for term in steps + outcome:
        if not _TERM.match(term):
            raise InputError(_UNKNOWN.format(term))
        if term.startswith("const:"):
            _constant(term)


def _constant(term: str) -> float:
    """The X of `const:X`, or an InputError naming the term."""
    text = term.removeprefix("const:")
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"'{term}': the constant score must be a number in [0, 1], not '{text}'") from None
    if not 0.0 <= value <= 1.0:
        raise InputError(f"'{term}': the constant score must lie in [0, 1]")
    return value


def build_reward(
    spec: str,
    *,
    judge_model: BaseChatModel | None = None,
    make_model: Callable[[str], BaseChatModel] | None = None,
    timeout: float = 120.0,
    family: str | None = None,
) -> RewardModel:
    """The reward model a spec describes.

    Args:
        judge_model: the chat model `judge` means (the solver's model, usually).
        make_model: turns a model spec into a chat model, for `judge:MODELSPEC`.
        family: the task family the reward will score, when it is known in advance: the LLM
            judge asks about code or math accordingly (otherwise it tells from each question).
    """
    (step_terms, step_rule), (out_terms, out_rule) = parse_reward_spec(spec)
    made: dict[tuple[str, str], RewardModel] = {}

    def term(text: str, role: str) -> RewardModel:
        kind = "shared" if not text.startswith(("vllm:", "shepherd:")) else role
        key = (text, kind)
        if key not in made:
            made[key] = _make_term(text, role, judge_model, make_model, timeout, family)
        return made[key]

    return CombinedReward(
        [term(t, "prm") for t in step_terms],
        [term(t, "orm") for t in out_terms],
        step_rule=step_rule,
        outcome_rule=out_rule,
    )


def _make_term(text, role, judge_model, make_model, timeout, family=None) -> RewardModel:
    if text == "verifier":
        from magicore.tools.rewards.verifier import ExecutionVerifier

        return ExecutionVerifier()
    if text == "execution":
        from magicore.tools.rewards.execution import ExecutionReward

        return ExecutionReward()
    if text == "judge" or text.startswith("judge:"):
        from magicore.tools.rewards.judge import LLMJudge

        if text == "judge":
            if judge_model is None:
                raise InputError("the reward 'judge' needs a chat model to judge with")
            return LLMJudge(judge_model, family=family)
        if make_model is None:
            raise InputError(f"'{text}': no way to build the judge's model here")
        return LLMJudge(make_model(text.removeprefix("judge:")), family=family)
    if text.startswith("const:"):
        return ConstantReward(_constant(text))
    m = re.fullmatch(r"(vllm|shepherd):(.+)@(https?://\S+)", text)
    if m:
        from magicore.tools.rewards.vllm import VLLMRewardModel

        style, model, url = m.groups()
        if role == "prm":
            prm_style = "math-shepherd" if style == "shepherd" else "qwen-prm"
            return VLLMRewardModel(url, prm_model=model, prm_style=prm_style, timeout=timeout)
        return VLLMRewardModel(url, orm_model=model, timeout=timeout)
    raise InputError(_UNKNOWN.format(text))

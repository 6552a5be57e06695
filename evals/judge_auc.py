"""How well a model separates right from wrong reasoning steps as an LLM judge (AUC).

Labelled steps come from GSM8K's reference solutions: for each problem, one calculation line of
its solution is the step under test, with the lines before it as context. The *correct* step is
the line as written (calculator annotations removed); the *wrong* one is the same line with its
result changed (by a small offset, a factor of ten, or a swapped digit, chosen per problem with
a fixed seed), so a judge must check the arithmetic to tell them apart. Each step is scored
with the judge reward's own prompt (P(Yes) from logprobs, temperature 0), and the AUC is the
probability that a correct step scores above a wrong one (ties count half).

    python -m magicore.evals.judge_auc --model embedded --problems 50 --out judge_auc.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from pathlib import Path

from magicore.evals.datasets import FILES, default_data_dir

_ANNOTATION = re.compile(r"<<([^=<>]*)=([^<>]*)>>")


def _wrong_value(value: str, rng: random.Random) -> str:
    number = float(value)
    choice = rng.choice(["offset", "tenfold", "swap"])
    if choice == "swap" and len(value.replace(".", "").lstrip("-")) >= 2 and len(set(value)) > 1:
        digits = list(value)
        positions = [i for i, ch in enumerate(digits) if ch.isdigit()]
        i, j = positions[-2], positions[-1]
        digits[i], digits[j] = digits[j], digits[i]
        swapped = "".join(digits)
        if swapped != value and not swapped.startswith("0"):
            return swapped
    if choice == "tenfold" and number != 0:
        wrong = number * 10
    else:
        wrong = number + rng.choice([-3, -2, -1, 1, 2, 3, 5, 10])
    return str(int(wrong)) if float(wrong).is_integer() else f"{wrong:g}"


def labelled_steps(problems: list[dict], rng: random.Random) -> list[dict]:
    """One correct and one wrong version of one calculation line per problem."""
    out = []
    for index, row in enumerate(problems):
        lines = [ln.strip() for ln in row["answer"].split("####")[0].strip().splitlines() if ln.strip()]
        calc = [i for i, ln in enumerate(lines) if _ANNOTATION.search(ln)]
        if not calc:
            continue
        target = rng.choice(calc)
        match = list(_ANNOTATION.finditer(lines[target]))[-1]
        result = match.group(2).strip()
        if not re.fullmatch(r"-?\d+(?:\.\d+)?", result):
            continue
        wrong = _wrong_value(result, rng)
        clean = [_ANNOTATION.sub("", ln) for ln in lines]
        line = lines[target]
        # the result written right after the annotation is the step's claim
        after = line[match.end():]
        if not after.lstrip("$ ").startswith(result):
            continue
        bad_line = _ANNOTATION.sub("", line[: match.end()] + after.replace(result, wrong, 1))
        # an "= result" before the annotation states it too
        bad_line = re.sub(rf"=\s*{re.escape(result)}(?!\d)", f"= {wrong}", bad_line, count=1)
        previous = clean[:target]
        for label, step in ((1, clean[target]), (0, bad_line)):
            out.append({"problem": index, "question": row["question"], "previous": previous, "step": step,
                        "label": label})  # fmt: skip
    return out


def auc(scores: list[float], labels: list[int]) -> float:
    """Probability that a positive outscores a negative (Mann-Whitney), ties counting half."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    if not pos or not neg:
        raise ValueError("AUC needs both correct and wrong steps")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


async def score_steps(judge, steps: list[dict]) -> list[float]:
    async def one(item: dict) -> float:
        return await judge.ascore_step(item["question"], [*item["previous"], item["step"]], len(item["previous"]))

    return list(await asyncio.gather(*(one(item) for item in steps)))


def main(argv: list[str] | None = None) -> int:
    from magicore.agents.backends import chat_model
    from magicore.tools.rewards.judge import LLMJudge

    parser = argparse.ArgumentParser(prog="python -m magicore.evals.judge_auc", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded", help="model spec of the judge (default: embedded)")
    parser.add_argument("--problems", type=int, default=50, help="GSM8K test problems (from the first; default 50)")
    parser.add_argument("--data", help="directory of gsm8k_test.jsonl (default ../shared/data)")
    parser.add_argument("--seed", type=int, default=0, help="seed choosing the line and its wrong value")
    parser.add_argument("--out", help="write the steps, scores and AUC here (JSON)")
    args = parser.parse_args(argv)
    data = Path(args.data) if args.data else default_data_dir()
    if data is None:
        print("judge_auc: no data directory; pass --data", file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in (data / FILES["gsm8k"]).read_text(encoding="utf-8").splitlines()[: args.problems]]
    steps = labelled_steps(rows, random.Random(args.seed))
    judge = LLMJudge(chat_model(args.model, max_tokens=1))
    started = time.perf_counter()
    scores = asyncio.run(score_steps(judge, steps))
    value = auc(scores, [s["label"] for s in steps])
    n_pos = sum(s["label"] for s in steps)
    print(f"judge {judge.name}: AUC {value:.3f} over {n_pos} correct and {len(steps) - n_pos} wrong steps "
          f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({
            "model": args.model, "judge": judge.name, "auc": value, "problems": args.problems, "seed": args.seed,
            "steps": [{**s, "score": score} for s, score in zip(steps, scores)],
        }, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

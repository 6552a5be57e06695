#!/usr/bin/env bash
# The evidence runs of docs/bench.md on the default embedded model: GSM8K (60 problems), MATH-500
# (40 problems) and HumanEval (40 problems), each paired and compute-matched. GSM8K comes first,
# all six configurations, so that one dataset's table is complete (and its Self-Refine records
# give the training-data export its critiques) before MATH-500's long sampling; on MATH-500
# Self-Refine, the costliest configuration on a CPU, runs after the others. Then HumanEval (its
# greedy sample has its own settings, so its own run directory; its Best-of-k rows only score the
# chains already sampled, and say whether MAgICoRe's gain is its reward or its refinement). Last,
# the ablations that refine every problem, magicore-all@4 (at k = 4 the easy/hard test sent none
# of GSM8K's to refinement, so magicore@4 alone says nothing of what review and refinement do):
# GSM8K's is done; HumanEval's, where execution feedback should matter most, runs before
# MATH-500's. Resumable: run it again after an interruption and it continues where it stopped
# (samples, scores and finished problems are kept in the run directories). Usage: docs/results/run-evidence.sh [path/to/magicore]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
magicore="${1:-magicore}"
gsm8k=(--dataset gsm8k --limit 60 --seed 0 --max-tokens 512 --out "$here/gsm8k-qwen2.5-coder-1.5b")
math500=(--dataset math500 --limit 40 --seed 0 --max-tokens 768 --out "$here/math500-qwen2.5-coder-1.5b")
humaneval=(--dataset humaneval --limit 40 --seed 0 --max-tokens 768 --out "$here/humaneval-qwen2.5-coder-1.5b")
common=(--rounds 3 --model embedded --concurrency 2 --no-progress)
first="sc@4,sc@12,bok@4,bok@12,magicore@4"  # cheapest first: they finish as soon as the samples exist
code="magicore@4,sc@4,sc@12,self-refine@4,sc@1,bok@4,bok@12"
"$magicore" bench "${gsm8k[@]}" --methods "$first,self-refine@4,magicore-all@4" "${common[@]}"
"$magicore" bench "${math500[@]}" --methods "$first" "${common[@]}"
"$magicore" bench "${math500[@]}" --methods "$first,self-refine@4" "${common[@]}"
"$magicore" bench "${humaneval[@]}" --methods "$code" "${common[@]}"
"$magicore" bench --dataset humaneval --limit 40 --seed 0 --methods sc@1 --temperature 0 --model embedded \
    --max-tokens 768 --concurrency 2 --no-progress --out "$here/humaneval-greedy-qwen2.5-coder-1.5b"
"$magicore" bench "${humaneval[@]}" --methods "$code,magicore-all@4" "${common[@]}"
"$magicore" bench "${math500[@]}" --methods "$first,self-refine@4,magicore-all@4" "${common[@]}"

#!/usr/bin/env bash
# The evidence runs of docs/bench.md on the default embedded model: GSM8K (60 problems), then
# MATH-500 (40 problems), each paired and compute-matched. Resumable: run it again after an
# interruption and it continues where it stopped (samples, scores and finished problems are
# kept in the run directories). Usage: docs/results/run-evidence.sh [path/to/magicore]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
magicore="${1:-magicore}"
configs="sc@4,sc@12,bok@4,bok@12,magicore@4,self-refine@4"  # cheapest first: they finish as soon as the samples exist
"$magicore" bench --dataset gsm8k --limit 60 --seed 0 --methods "$configs" --rounds 3 \
    --max-tokens 512 --model embedded --concurrency 2 --no-progress --out "$here/gsm8k-qwen2.5-coder-1.5b"
"$magicore" bench --dataset math500 --limit 40 --seed 0 --methods "$configs" --rounds 3 \
    --max-tokens 768 --model embedded --concurrency 2 --no-progress --out "$here/math500-qwen2.5-coder-1.5b"

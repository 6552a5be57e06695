#!/usr/bin/env bash
# Ten grade-school word problems written for this check (not from any benchmark set), each asked
# once with `magicore solve "<question>" -k 3` on the default embedded model; one JSON line per
# question in results.jsonl. Usage: docs/results/embedded-check/run.sh [MAGICORE] [EXTRA ARGS...]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
magicore="${1:-magicore}"; shift || true
python="$(dirname "$(command -v "$magicore")")/python"  # magicore's own, for answers_match
: > "$here/results.jsonl"
while IFS= read -r line; do
  question="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["question"])' "$line")"
  gold="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["answer"])' "$line")"
  out="$("$magicore" solve "$question" -k 3 --json "$@" 2>/dev/null)" || true
  "$python" - "$line" "$out" >> "$here/results.jsonl" <<'PY'
import json, sys
from magicore.tools.answers import answers_match
item = json.loads(sys.argv[1])
try:
    out = json.loads(sys.argv[2])
except ValueError:
    out = {"answer": None, "error": sys.argv[2][-200:]}
keep = {k: out.get(k) for k in ("answer", "votes", "route", "llm_calls", "output_tokens", "seconds", "error")}
print(json.dumps({**item, **keep, "correct": answers_match(out.get("answer"), item["answer"])}))
PY
  tail -1 "$here/results.jsonl" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["id"], r["answer"], r["correct"], r["seconds"])'
done < "$here/questions.jsonl"
python3 -c "import json; rs=[json.loads(l) for l in open('$here/results.jsonl')]; print(f'{sum(r[\"correct\"] for r in rs)} of {len(rs)} right')"

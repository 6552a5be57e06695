"""What the status panel shows, folded from the graph's progress events (graphs/events.py).

`Progress` is plain data (it is stored with each answer, so a reloaded conversation shows the
same panel) and knows nothing of Streamlit. `apply` returns the panel sections an event
changed, so the live panel redraws only those.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SAMPLES, TABLE, WRITING, FINAL = "samples", "table", "writing", "final"


def _row(view: dict) -> dict:
    """A candidate-table row from an event's chain view."""
    return {key: view.get(key) for key in ("index", "answer", "origin", "round", "step_scores", "orm", "reward")}


@dataclass
class Progress:
    k: int = 0
    drawn: int = 0
    candidates: list[dict] = field(default_factory=list)  # the sampled chains, then the scored pool
    scored_round: int | None = None  # the round of the pool in `candidates`; None: not scored yet
    reward_name: str | None = None
    pool_size: int = 0
    blocks: list[dict] = field(default_factory=list)  # the timeline: route decisions and rounds
    final: dict | None = None
    #: the Solver's samples being written, by model call (token events; not stored)
    writing: dict[str, str] = field(default_factory=dict)

    def apply(self, event: dict) -> set[str]:
        """Fold one event in; returns the keys of the sections to redraw."""
        handler = getattr(self, f"_on_{event.get('type')}", None)
        return handler(event) if handler else set()

    def _on_token(self, e: dict) -> set[str]:
        """Text the Solver is writing (streamed model calls: one request per sample)."""
        if e.get("role") != "solver" or self.scored_round is not None:
            return set()
        call = str(e.get("call"))
        self.writing[call] = self.writing.get(call, "") + str(e.get("text") or "")
        return {WRITING}

    def _on_chain(self, e: dict) -> set[str]:
        self.k = max(self.k, int(e.get("k") or 1))
        self.drawn += 1
        done = next((call for call, text in self.writing.items() if text.strip() == str(e.get("text", "")).strip()),
                    None)  # fmt: skip
        dirty = {SAMPLES}
        if done is not None:  # the sample is written: it moves to the table
            del self.writing[done]
            dirty.add(WRITING)
        if self.scored_round is None:
            self.candidates.append(_row(e))
            dirty.add(TABLE)
        return dirty

    def _on_scores(self, e: dict) -> set[str]:
        writing = {WRITING} if self.writing else set()
        self.writing.clear()
        rows, number = [_row(v) for v in e.get("pool") or []], int(e.get("round") or 0)
        self.pool_size = len(rows)
        self.reward_name = e.get("reward")
        if self.scored_round is None:  # the samples' scores: the table at the top
            self.candidates, self.scored_round = rows, number
            return {TABLE, *writing}
        return self._append({"kind": "pool", "round": number, "rows": rows})  # a later round's pool

    def _on_route(self, e: dict) -> set[str]:
        keys = ("round", "hard", "cond1", "mean_z", "orm_confidence", "prm_confidence", "majority",
                "calibration", "will_refine")  # fmt: skip
        dirty = self._append({"kind": "route", **{k: e.get(k) for k in keys}})
        if e.get("will_refine"):  # every chain of the pool gets a tab now, in order
            block, key = self._round(int(e.get("round") or 0) + 1)
            for i in range(self.pool_size):
                block["chains"].setdefault(str(i), {})
            dirty.add(key)
        return dirty

    def _round(self, number: int) -> tuple[dict, str]:
        for i, block in enumerate(self.blocks):
            if block["kind"] == "round" and block["round"] == number:
                return block, f"block:{i}"
        block = {"kind": "round", "round": number, "chains": {}}
        key = next(iter(self._append(block)))
        return block, key

    def _chain(self, number: int, index: int) -> tuple[dict, str]:
        block, key = self._round(number)
        return block["chains"].setdefault(str(index), {}), key  # str keys: the panel is stored as JSON

    def _on_review(self, e: dict) -> set[str]:
        # a review in decision round r belongs to refinement round r + 1
        chain, key = self._chain(int(e.get("round") or 0) + 1, int(e.get("chain_index") or 0))
        chain.update(feedback=e.get("feedback", ""), low_steps=e.get("low_steps") or [],
                     evidence=e.get("evidence") or [])  # fmt: skip
        return {key}

    def _on_refinement(self, e: dict) -> set[str]:
        chain, key = self._chain(int(e.get("round") or 1), int(e.get("index") or 0))
        chain.update(previous=e.get("previous", ""), text=e.get("text", ""), answer=e.get("answer"),
                     tests=e.get("tests") or [])  # fmt: skip
        return {key}

    def _on_draft(self, e: dict) -> set[str]:  # Self-Refine
        number = int(e.get("round") or 0)
        if number == 0:
            return self._append({"kind": "draft", "text": e.get("text", ""), "answer": e.get("answer"),
                                 "tests": e.get("tests") or []})  # fmt: skip
        chain, key = self._chain(number, 0)
        chain.update(previous=self._last_draft(number), text=e.get("text", ""), answer=e.get("answer"),
                     tests=e.get("tests") or [])  # fmt: skip
        return {key}

    def _last_draft(self, before: int) -> str:
        texts = [b["text"] for b in self.blocks if b["kind"] == "draft"]
        texts += [b["chains"]["0"]["text"] for b in self.blocks
                  if b["kind"] == "round" and b["round"] < before and "text" in b["chains"].get("0", {})]  # fmt: skip
        return texts[-1] if texts else ""

    def _on_feedback(self, e: dict) -> set[str]:  # Self-Refine: feedback on draft r, revised in round r + 1
        chain, key = self._chain(int(e.get("round") or 0) + 1, 0)
        chain.update(feedback=e.get("feedback", ""), done=bool(e.get("done")))
        return {key}

    def _on_final(self, e: dict) -> set[str]:
        self.final = {"method": e.get("method"), "answer": e.get("answer"), "votes": e.get("votes") or {},
                      "rounds": e.get("rounds", 0)}  # fmt: skip
        return {FINAL}

    def _append(self, block: dict) -> set[str]:
        self.blocks.append(block)
        return {f"block:{len(self.blocks) - 1}"}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["writing"]  # what was being written is in the chains once they are done
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Progress:
        """A panel saved in the conversation history; keys this version does not know are
        dropped, so a history written by another version still loads."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

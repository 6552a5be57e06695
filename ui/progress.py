"""Progress on stderr while a method runs, driven by the graph's stream events.

Shown only when stderr is a terminal (tqdm's `disable=None`), so pipes and `--json` consumers
see nothing but the result.
"""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, k: int):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=k, desc="sampling", unit="chain", file=sys.stderr, disable=None, leave=False)
        self.k = k

    def _restart(self, desc: str, total: int | None) -> None:
        self.bar.close()
        self.bar = self._tqdm(total=total, desc=desc, file=sys.stderr, disable=None, leave=False)

    def __call__(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "chain":
            self.bar.update(1)
        elif kind == "scores":
            self.bar.set_postfix_str(f"scored {len(event['scored'])} chains")
        elif kind == "route" and event.get("will_refine"):
            self._restart(f"round {event['round'] + 1}: review + refine", 2 * self.k)
        elif kind in ("review", "refinement", "draft", "feedback"):
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()

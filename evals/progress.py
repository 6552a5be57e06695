"""A progress bar with ETA and running accuracy for benchmark runs (tqdm on stderr)."""

from __future__ import annotations

import sys


class ProgressBar:
    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        self.done = self.correct = 0
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="problem", file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.5 if sys.stderr.isatty() else 10.0)  # fmt: skip

    def update(self, record: dict | None = None) -> None:
        if record is not None:
            self.done += 1
            self.correct += bool(record.get("correct"))
        if self.bar is not None:
            if record is not None:
                self.bar.set_postfix_str(f"acc {self.correct}/{self.done}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
